"""Wav encodings other than int16 are read at their true level, on the int16 scale the model expects.

The same signal written as 8/16/24/32-bit integers or 32/64-bit floats (WAV and FLAC) gives the
same samples and the same AV-HuBERT audio features, in the reader, the dataset, the noise
augmentation and the MFCC reader of clustering.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sf_fairseq.data.audio_features import audio_features_from_wav
from sf_fairseq.data.audio_io import read_wav, read_wav_checked
from sf_fairseq.data.av_hubert_dataset import AVHubertDataset
from sf_fairseq.data.manifest import ManifestItem, write_label_lines, write_manifest
from sf_fairseq.data.noise import NoiseAugmenter
from sf_fairseq.preprocess.features_mfcc import mfcc_features, read_mono_wav

RATE = 16000


def _signal(n: int = 8000, seed: int = 0) -> np.ndarray:
    """int16 speech-like tone with noise, reaching both ends of the int16 range."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    x = 9000 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 300, n)
    x[100], x[200] = 32767, -32768
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _write(path: Path, k: np.ndarray, subtype: str, fmt: str = "WAV") -> Path:
    """Write int16 values ``k`` exactly in ``subtype`` (full scale = 32768)."""
    if subtype in ("PCM_24", "PCM_32"):
        data = k.astype(np.int32) << 16  # soundfile keeps the top bits for PCM_24
    elif subtype in ("FLOAT", "DOUBLE"):
        data = k.astype(np.float64) / 32768.0
    else:
        data = k
    sf.write(path, data, RATE, subtype=subtype, format=fmt)
    return path


LOSSLESS = [("PCM_16", "WAV"), ("PCM_24", "WAV"), ("PCM_32", "WAV"), ("FLOAT", "WAV"),
            ("DOUBLE", "WAV"), ("PCM_24", "FLAC")]


@pytest.mark.parametrize("subtype,fmt", LOSSLESS)
def test_same_signal_same_samples_and_features_in_every_encoding(tmp_path, subtype, fmt) -> None:
    k = _signal()
    path = _write(tmp_path / f"a.{fmt.lower()}", k, subtype, fmt)
    got = read_wav_checked(path, RATE)
    np.testing.assert_array_equal(got, k)  # int16 values exactly, whatever the encoding
    np.testing.assert_allclose(audio_features_from_wav(got), audio_features_from_wav(k), atol=1e-5)
    assert got.dtype == (np.int16 if subtype == "PCM_16" else np.float32)


def test_8_bit_files_on_the_int16_scale(tmp_path) -> None:
    k = _signal()
    for subtype in ("PCM_U8", "PCM_S8"):
        fmt = "WAV" if subtype == "PCM_U8" else "AIFF"
        got = read_wav_checked(_write(tmp_path / f"a_{subtype}.{fmt.lower()}", k, subtype, fmt), RATE)
        assert got.dtype == np.int16
        np.testing.assert_allclose(got, k, atol=256)  # 8-bit quantisation step


def test_float_wav_is_not_silence(tmp_path) -> None:
    # What torchaudio.save and scipy.io.wavfile.write produce from float32 data in [-1, 1].
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
    sf.write(tmp_path / "f.wav", x, RATE, subtype="FLOAT")
    got = read_wav_checked(tmp_path / "f.wav", RATE)
    np.testing.assert_allclose(got, x * 32768, rtol=1e-6)
    assert np.abs(got).max() > 9000


def test_finer_resolution_is_kept(tmp_path) -> None:
    sf.write(tmp_path / "i24.wav", np.array([1, -3, 256], np.int32) << 8, RATE, subtype="PCM_24")
    np.testing.assert_array_equal(read_wav(tmp_path / "i24.wav")[0], [1 / 256, -3 / 256, 1.0])
    sf.write(tmp_path / "f.wav", np.array([0.25, -0.5]) / 32768, RATE, subtype="FLOAT")
    np.testing.assert_array_equal(read_wav(tmp_path / "f.wav")[0], [0.25, -0.5])


def test_float_beyond_full_scale_kept_with_a_warning(tmp_path, caplog) -> None:
    sf.write(tmp_path / "loud.wav", np.array([0.5, 1.5, -2.0], np.float32), RATE, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="sf_fairseq.data.audio_io"):
        got = read_wav_checked(tmp_path / "loud.wav", RATE)
    np.testing.assert_array_equal(got, [16384.0, 49152.0, -65536.0])
    assert "loud.wav" in caplog.text and "2.00 times full scale" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sf_fairseq.data.audio_io"):
        read_wav_checked(tmp_path / "loud.wav", RATE)  # once per file: training rereads files
    assert caplog.text == ""


def test_float_stereo_averaged_without_rounding(tmp_path) -> None:
    sf.write(tmp_path / "s.wav", np.array([[0.5, 0.25], [-1.0, 0.0]], np.float32), RATE, subtype="FLOAT")
    samples, rate = read_wav(tmp_path / "s.wav")
    assert rate == RATE and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, [12288.0, -16384.0])


def test_rate_and_channel_checks_still_apply_to_float_files(tmp_path) -> None:
    sf.write(tmp_path / "r8k.wav", np.zeros(800, np.float32), 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"r8k\.wav.*8000 Hz"):
        read_wav_checked(tmp_path / "r8k.wav", RATE)
    sf.write(tmp_path / "st.wav", np.zeros((800, 2), np.float32), RATE, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"st\.wav.*2 channel"):
        read_wav_checked(tmp_path / "st.wav", RATE)


def test_dataset_reads_float_wavs(tmp_path) -> None:
    k = _signal(40 * 640)
    _write(tmp_path / "int16.wav", k, "PCM_16")
    _write(tmp_path / "float.wav", k, "FLOAT")
    items = [ManifestItem(name, "unused.mp4", f"{name}.wav", 40, len(k)) for name in ("int16", "float")]
    write_manifest(tmp_path / "train.tsv", str(tmp_path), items)
    write_label_lines(tmp_path / "train.km", [" ".join(["0"] * 40)] * 2)
    ds = AVHubertDataset(str(tmp_path / "train.tsv"), 25, [str(tmp_path / "train.km")], 25, [999], [2],
                         stack_order_audio=4, modalities=["audio"])
    want, got = ds[0]["audio"], ds[1]["audio"]
    assert got.shape == (40, 104)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_float_noise_files_are_mixed_at_their_level(tmp_path) -> None:
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "n.wav", rng.normal(0, 0.05, 4000).astype(np.float32), RATE, subtype="FLOAT")
    clean = _signal()
    noisy = NoiseAugmenter([str(tmp_path / "n.wav")], snr="0")(clean, np.random.default_rng(0))
    noise = noisy.astype(np.float64) - clean
    assert np.sqrt(np.mean(noise ** 2)) > 0.3 * np.sqrt(np.mean(clean.astype(np.float64) ** 2))


def test_mfcc_reader_reads_every_encoding_at_its_level(tmp_path) -> None:
    k = _signal()
    want = mfcc_features(k / 32768.0)
    for subtype, fmt in LOSSLESS:
        wav = read_mono_wav(_write(tmp_path / f"{subtype}.{fmt.lower()}", k, subtype, fmt))
        np.testing.assert_allclose(mfcc_features(wav), want, atol=1e-4)


def test_missing_file_and_directory_say_so(tmp_path) -> None:
    # libsndfile says "System error" and "Format not recognised" for these.
    with pytest.raises(FileNotFoundError, match=r"audio file not found: '.*gone\.wav'"):
        read_wav_checked(tmp_path / "gone.wav", RATE)
    (tmp_path / "x.wav").mkdir()
    with pytest.raises(IsADirectoryError, match=r"x\.wav' is a directory"):
        read_wav(tmp_path / "x.wav")
