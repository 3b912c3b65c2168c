"""Audio front-end: parity with python_speech_features, stacking, normalisation, wav reading."""

from __future__ import annotations

import numpy as np
import pytest
import python_speech_features  # test-only dependency (the test extra): the parity reference
import soundfile as sf
import torch

from sf_fairseq.data.audio_features import (
    audio_features_from_wav,
    logfbank,
    normalize_per_frame,
    stack_frames,
)
from sf_fairseq.data.audio_io import AudioFormatError, read_wav, read_wav_checked


def _speech_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """Voiced harmonics with a syllable envelope, silent gaps and a little noise, int16."""
    t = np.arange(n) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)  # half the time exactly silent
    x = 8000 * voiced * envelope + rng.normal(0, 30, n) * (envelope > 0)
    return np.clip(x, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("n", [1, 7, 399, 400, 401, 560, 4003, 16000, 40961])
def test_logfbank_matches_python_speech_features_random(n):
    rng = np.random.default_rng(n)
    signal = rng.integers(-32768, 32768, size=n).astype(np.int16)
    ours = logfbank(signal, 16000)
    ref = python_speech_features.logfbank(signal, samplerate=16000)
    assert ours.shape == ref.shape == (ref.shape[0], 26)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("n", [250, 3201, 16000, 48000])
def test_logfbank_matches_python_speech_features_speech_like(n):
    signal = _speech_like(n, np.random.default_rng(0))
    ours = logfbank(signal)
    ref = python_speech_features.logfbank(signal, samplerate=16000)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_logfbank_silence_uses_eps_floor_and_frame_count():
    feats = logfbank(np.zeros(16000, dtype=np.int16))
    assert feats.shape == (99, 26)  # 1 + ceil((16000 - 400) / 160)
    np.testing.assert_allclose(feats, np.log(np.finfo(float).eps))


def test_logfbank_rejects_empty_and_2d():
    with pytest.raises(ValueError, match="empty"):
        logfbank(np.zeros(0, dtype=np.int16))
    with pytest.raises(ValueError, match="1-D"):
        logfbank(np.zeros((10, 2), dtype=np.int16))


def test_stack_frames_order_shape_and_zero_tail():
    feats = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    stacked = stack_frames(feats, 4)
    assert stacked.shape == (3, 12) and stacked.dtype == np.float32
    np.testing.assert_array_equal(stacked[0], feats[0:4].reshape(-1))
    np.testing.assert_array_equal(stacked[2, :6], feats[8:10].reshape(-1))
    np.testing.assert_array_equal(stacked[2, 6:], 0)
    assert stack_frames(feats[:8], 4).shape == (2, 12)
    np.testing.assert_array_equal(stack_frames(feats, 1), feats)


def test_normalize_per_frame_equals_layer_norm():
    feats = np.random.default_rng(1).normal(5, 3, size=(7, 104)).astype(np.float32)
    out = normalize_per_frame(feats)
    ref = torch.nn.functional.layer_norm(torch.from_numpy(feats), (104,), eps=1e-5).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-3)
    assert isinstance(normalize_per_frame(torch.from_numpy(feats)), torch.Tensor)


def test_audio_features_from_wav_shape_and_pipeline():
    signal = _speech_like(16000 + 123, np.random.default_rng(2))
    feats = audio_features_from_wav(signal)
    n_fbank = python_speech_features.logfbank(signal).shape[0]
    assert feats.dtype == np.float32 and feats.shape == (-(-n_fbank // 4), 104)
    raw = audio_features_from_wav(signal, normalize=False)
    ref = stack_frames(python_speech_features.logfbank(signal).astype(np.float32), 4)
    np.testing.assert_allclose(raw, ref, atol=1e-4)
    np.testing.assert_allclose(feats, normalize_per_frame(ref), atol=1e-4)


def test_read_wav_int16_mono_and_stereo(tmp_path):
    samples = np.random.default_rng(3).integers(-30000, 30000, 800).astype(np.int16)
    sf.write(tmp_path / "a.wav", samples, 16000, subtype="PCM_16")
    got, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and got.dtype == np.int16
    np.testing.assert_array_equal(got, samples)
    stereo = np.stack([samples, np.zeros_like(samples)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="PCM_16")
    mono, rate = read_wav(tmp_path / "s.wav")
    assert rate == 8000 and mono.shape == (800,)
    np.testing.assert_allclose(mono, samples / 2, atol=1)


def test_read_wav_errors_name_the_path(tmp_path):
    with pytest.raises(OSError, match="missing.wav"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wav file")
    with pytest.raises(OSError, match="junk.wav"):
        read_wav(tmp_path / "junk.wav")
    sf.write(tmp_path / "r8k.wav", np.zeros(80, np.int16), 8000, subtype="PCM_16")
    with pytest.raises(AudioFormatError, match=r"r8k\.wav.*1 channel\(s\) at 8000 Hz"):
        read_wav_checked(tmp_path / "r8k.wav")
    sf.write(tmp_path / "st.wav", np.zeros((80, 2), np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioFormatError, match=r"st\.wav.*2 channel"):
        read_wav_checked(tmp_path / "st.wav")
