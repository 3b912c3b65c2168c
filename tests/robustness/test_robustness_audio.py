"""Audio perturbations: measured SNR, codec and bit rate applied, alignment and length kept,
spectral limits of resampling and band limiting."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from scipy.signal import correlate

from sf_fairseq.eval import perturb_audio as pa

SR = 16000


def speech_like(seconds: float = 2.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonics of 150 Hz up to 7.5 kHz with a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    harmonics = sum(np.sin(2 * np.pi * 150 * k * t + k) / k**0.5 for k in range(1, 50) if 150 * k < sr / 2 - 500)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)
    x = 3000 * envelope * harmonics / 4 + rng.normal(0, 50, t.size)
    return x.astype(np.int16)


def band_energy(x: np.ndarray, sr: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size))) ** 2  # Hann: no leakage
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def lag(a: np.ndarray, b: np.ndarray, max_lag: int = 400) -> int:
    """The shift of ``b`` against ``a`` (samples) with the highest cross-correlation."""
    full = correlate(b.astype(np.float64), a.astype(np.float64), mode="full", method="fft")
    centre = a.size - 1  # zero shift
    return int(np.argmax(full[centre - max_lag : centre + max_lag + 1])) - max_lag


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    return 10 * np.log10(np.mean(clean**2) / np.mean((noisy.astype(np.float64) - clean) ** 2))


def test_noise_hits_the_level_snr_per_channel_and_is_seeded():
    x = speech_like()
    stereo = np.stack([x, (x // 2).astype(np.int16)])
    for level in pa.LEVELS:
        target = pa.AUDIO_PERTURBATIONS["noise"].param(level)
        out = pa.audio_perturbation("noise", level, np.random.default_rng(0))(stereo, SR)
        assert out.shape == stereo.shape and out.dtype == np.int16
        for ch in range(2):
            assert snr_db(stereo[ch], out[ch]) == pytest.approx(target, abs=0.1)
    a = pa.add_noise(x, 10, np.random.default_rng(3))
    assert np.array_equal(a, pa.add_noise(x, 10, np.random.default_rng(3)))
    assert not np.array_equal(a, pa.add_noise(x, 10, np.random.default_rng(4)))


@pytest.mark.parametrize("codec, name", [("aac", "aac"), ("mp3", "mp3")])
def test_compression_applies_codec_and_bit_rate_and_keeps_alignment(codec, name):
    x = speech_like(3.0)
    assert lag(x, np.r_[np.zeros(7, np.int16), x[:-7]]) == 7  # the helper sees a delay
    errors = []
    for kbps in (64, 32, 16):
        data = pa.encode_bytes(x, SR, codec, kbps)
        with av.open(io.BytesIO(data)) as container:
            assert container.streams.audio[0].codec_context.name.startswith(name)  # mp3 decodes as mp3float
        measured = len(data) * 8 / 3.0 / 1000
        assert measured == pytest.approx(kbps, rel=0.3)
        out = pa.compress(x, SR, codec, kbps)
        assert out.shape == x.shape and out.dtype == np.int16
        assert lag(x, out) == 0  # the encoder delay is removed
        errors.append(snr_db(x, out))
    assert errors == sorted(errors, reverse=True)  # lower bit rate, lower SNR
    assert errors[0] > 10


def test_compression_levels_follow_the_table():
    x = speech_like(1.0)
    for code in ("aac", "mp3"):
        sizes = [len(pa.encode_bytes(x, SR, code, pa.AUDIO_PERTURBATIONS[code].param(lv))) for lv in pa.LEVELS]
        assert sizes == sorted(sizes, reverse=True)


def test_resampling_removes_content_above_the_lower_nyquist_and_keeps_the_rest():
    x = speech_like()
    for level in pa.LEVELS:
        via = pa.AUDIO_PERTURBATIONS["resample"].param(level)
        out = pa.audio_perturbation("resample", level, np.random.default_rng(0))(x, SR)
        assert out.shape == x.shape and out.dtype == np.int16
        # 1 kHz above the new Nyquist frequency (the filter's transition band) nothing is left.
        above = band_energy(out, SR, via / 2 + 1000, SR / 2) / band_energy(x, SR, via / 2 + 1000, SR / 2)
        below = band_energy(out, SR, 0, via / 2 - 500) / band_energy(x, SR, 0, via / 2 - 500)
        assert above < 1e-4
        assert below == pytest.approx(1.0, abs=0.05)
        assert lag(x, out) == 0
    assert np.array_equal(pa.resample_through(x, SR, SR), x)


def test_band_limit_drops_energy_outside_the_band_zero_phase():
    x = speech_like()
    for level in pa.LEVELS:
        low, high = pa.AUDIO_PERTURBATIONS["band"].param(level)
        out = pa.audio_perturbation("band", level, np.random.default_rng(0))(x, SR)
        assert out.shape == x.shape
        below = band_energy(out, SR, 0, low / 2) / band_energy(x, SR, 0, low / 2)
        inside = band_energy(out, SR, low * 1.5, high / 1.5) / band_energy(x, SR, low * 1.5, high / 1.5)
        assert below < 0.05
        if high * 1.5 < SR / 2:
            above = band_energy(out, SR, high * 1.5, SR / 2) / band_energy(x, SR, high * 1.5, SR / 2)
            assert above < 0.01
        assert inside == pytest.approx(1.0, abs=0.1)
        assert lag(x, out) == 0
    # A cut-off above Nyquist leaves a high-pass.
    out = pa.band_limit(x, 8000, 100, 7000)
    assert out.shape == x.shape


def test_audio_errors():
    with pytest.raises(ValueError, match="unknown audio perturbation"):
        pa.audio_perturbation("gsm", 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="level"):
        pa.audio_perturbation("noise", 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="codec"):
        pa.encode_bytes(speech_like(0.1), SR, "opus", 16)
