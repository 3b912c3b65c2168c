"""Additive noise at a target SNR, SNR spec parsing, noise lists."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sf_fairseq.data.noise import (
    NoiseAugmenter,
    SnrSpec,
    average_noises,
    mix_at_snr,
    parse_snr,
    read_noise_list,
)


def _snr_db(clean, mixed):
    clean = clean.astype(np.float64)
    noise = mixed.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean ** 2) / np.mean(noise ** 2))


def _speech(n, rng, amp=3000):
    t = np.arange(n) / 16000
    x = amp * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    return (x + rng.normal(0, 50, n)).astype(np.int16)


def test_parse_snr():
    assert parse_snr("0") == SnrSpec(0.0, 0.0)
    assert parse_snr("7.5") == SnrSpec(7.5, 7.5)
    assert parse_snr(-3) == SnrSpec(-3.0, -3.0)
    assert parse_snr("-5,5") == SnrSpec(-5.0, 5.0)
    assert parse_snr("(-5, 5)") == SnrSpec(-5.0, 5.0)
    assert parse_snr((0, 10)) == SnrSpec(0.0, 10.0)
    for bad in ["", "abc", "5,-5", "1,2,3", "__import__('os')"]:
        with pytest.raises(ValueError, match="invalid SNR spec"):
            parse_snr(bad)


def test_snr_range_sampling_inclusive_integers():
    rng = np.random.default_rng(0)
    draws = {SnrSpec(-2, 2).sample(rng) for _ in range(500)}
    assert draws == {-2.0, -1.0, 0.0, 1.0, 2.0}
    real = [SnrSpec(0.5, 1.5).sample(rng) for _ in range(200)]
    assert min(real) >= 0.5 and max(real) <= 1.5 and len(set(real)) > 100


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.0, 20.0])
def test_mix_at_snr_measured(snr):
    rng = np.random.default_rng(1)
    clean = _speech(16000, rng)
    noise = rng.normal(0, 5000, 7000)  # shorter: tiled
    mixed = mix_at_snr(clean, noise, snr)
    assert mixed.dtype == np.int16 and mixed.shape == clean.shape
    assert abs(_snr_db(clean, mixed) - snr) < 0.5


def test_mix_at_snr_clip_safe_rescale():
    rng = np.random.default_rng(2)
    clean = _speech(8000, rng, amp=30000)
    mixed = mix_at_snr(clean, rng.normal(0, 1000, 8000), -5.0)
    peak = np.abs(mixed.astype(np.int64)).max()
    assert peak >= 32766  # scaled so the peak just fits, not clipped flat
    assert np.sum(np.abs(mixed.astype(np.int64)) >= 32766) < 5
    # the whole mix is scaled, so the SNR still holds
    ratio = np.dot(mixed.astype(np.float64), clean) / np.dot(clean.astype(np.float64), clean)
    assert abs(_snr_db(clean * ratio, mixed) + 5.0) < 0.5


def test_mix_with_silent_noise_returns_clean():
    clean = _speech(400, np.random.default_rng(3))
    np.testing.assert_array_equal(mix_at_snr(clean, np.zeros(10), 0.0), clean)


def test_mix_with_silent_noise_keeps_float_speech_level():
    """Speech read from a 24-bit/float wav is float on the int16 scale: rounded, not truncated,
    and rescaled rather than wrapped around when beyond full scale."""
    clean = np.array([0.6, -0.6, 1000.4, 40000.0, -20000.0], dtype=np.float32)
    mixed = mix_at_snr(clean, np.zeros(10), 0.0)
    scale = 32767.0 / 40000.0
    np.testing.assert_array_equal(mixed, np.rint(clean * np.float32(scale)).astype(np.int16))


def test_average_noises_trims_and_floors():
    out = average_noises([np.array([1, 2, 3, 4], np.int16), np.array([2, 2, 2], np.int16)])
    np.testing.assert_array_equal(out, [1, 2, 2])


def test_noise_list_and_augmenter(tmp_path):
    rng = np.random.default_rng(4)
    paths = []
    for i in range(3):
        p = tmp_path / f"n{i}.wav"
        sf.write(p, rng.normal(0, 3000, 4000 + 1000 * i).astype(np.int16), 16000, subtype="PCM_16")
        paths.append(str(p))
    (tmp_path / "train.tsv").write_text("\n".join(paths) + "\n\n")
    assert read_noise_list(tmp_path / "train.tsv") == paths
    aug = NoiseAugmenter.from_list(tmp_path / "train.tsv", snr="3", num=2)
    clean = _speech(16000, rng)
    noisy = aug(clean, np.random.default_rng(5))
    assert abs(_snr_db(clean, noisy) - 3.0) < 0.5
    np.testing.assert_array_equal(noisy, aug(clean, np.random.default_rng(5)))
    # range spec: measured SNR within the range
    aug = NoiseAugmenter(paths, snr="-5,5", num=1)
    for seed in range(5):
        assert -5.5 < _snr_db(clean, aug(clean, np.random.default_rng(seed))) < 5.5


def test_noise_errors_name_paths(tmp_path):
    sf.write(tmp_path / "n8k.wav", np.ones(800, np.int16), 8000, subtype="PCM_16")
    aug = NoiseAugmenter([str(tmp_path / "n8k.wav")])
    with pytest.raises(ValueError, match="n8k.wav.*8000 Hz"):
        aug(np.ones(100, np.int16), np.random.default_rng(0))
    aug = NoiseAugmenter([str(tmp_path / "gone.wav")])
    with pytest.raises(OSError, match="gone.wav"):
        aug(np.ones(100, np.int16), np.random.default_rng(0))
    (tmp_path / "empty.tsv").write_text("\n")
    with pytest.raises(ValueError, match="empty.tsv"):
        read_noise_list(tmp_path / "empty.tsv")
