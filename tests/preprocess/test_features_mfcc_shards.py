"""MFCC features (shape, rate, Kaldi equivalence) and the on-disk shard format."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from sf_fairseq.data.manifest import Manifest, ManifestItem
from sf_fairseq.preprocess.feature_shards import (
    FeatureShardError,
    FeatureShardWriter,
    iter_shard_items,
    read_shard,
    shard_exists,
    shard_paths,
    shard_range,
)
from sf_fairseq.preprocess.features_mfcc import MfccFeatureReader, mfcc_features, read_mono_wav


def _tone(n_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.normal(size=n_samples)).astype(np.float64)


@pytest.mark.parametrize("n_samples", [400, 16000, 16000 + 159, 16000 + 160, 40 * 640])
def test_mfcc_shape_and_rate(n_samples: int) -> None:
    feats = mfcc_features(_tone(n_samples))
    # Kaldi snip_edges: one frame per full 25 ms window, hop 10 ms, i.e. 100 Hz.
    assert feats.shape == (1 + (n_samples - 400) // 160, 39)
    assert feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_mfcc_short_clip_has_no_frames() -> None:
    assert mfcc_features(_tone(399)).shape == (0, 39)


def test_mfcc_matches_kaldi_with_deltas() -> None:
    wav = _tone(16000 * 2, seed=3)
    feats = mfcc_features(wav)
    x = torch.from_numpy(wav).float()[None]
    ceps = torchaudio.compliance.kaldi.mfcc(x, sample_frequency=16000, use_energy=False)
    np.testing.assert_allclose(feats[:, :13], ceps.numpy(), rtol=1e-5, atol=1e-5)
    # Δ is the 5-frame regression of the cepstra along time.
    c = ceps.numpy().astype(np.float64)
    padded = np.concatenate([c[:1], c[:1], c, c[-1:], c[-1:]])
    delta = sum(k * (padded[2 + k : 2 + k + len(c)] - padded[2 - k : 2 - k + len(c)]) for k in (1, 2)) / 10
    np.testing.assert_allclose(feats[:, 13:26], delta, rtol=1e-4, atol=1e-4)
    assert not np.allclose(feats[:, 26:], 0)


def test_reader_uses_audio_column_and_averages_stereo(tmp_path) -> None:
    mono = _tone(16000, seed=1)
    sf.write(tmp_path / "a.wav", np.stack([mono, mono], axis=1), 16000, subtype="PCM_16")
    item = ManifestItem("a", "v/a.mp4", "a.wav", 25, 16000)
    feats = next(MfccFeatureReader().iter_features(Manifest(str(tmp_path), [item]), [item]))
    int16_mono = sf.read(tmp_path / "a.wav")[0].mean(axis=1)
    np.testing.assert_allclose(feats, mfcc_features(int16_mono), atol=1e-5)
    assert feats.shape == (98, 39)


def test_wrong_sample_rate_names_the_file(tmp_path) -> None:
    sf.write(tmp_path / "b.wav", _tone(8000), 8000)
    with pytest.raises(ValueError, match="b.wav.*8000"):
        read_mono_wav(tmp_path / "b.wav")


@pytest.mark.parametrize("n_items,nshard", [(10, 3), (7, 7), (3, 5), (100, 8), (0, 2)])
def test_shard_range_contiguous_ceil_chunks(n_items: int, nshard: int) -> None:
    ranges = [shard_range(n_items, nshard, r) for r in range(nshard)]
    per = math.ceil(n_items / nshard)
    covered = [i for start, end in ranges for i in range(start, end)]
    assert covered == list(range(n_items))
    assert all(end - start <= per for start, end in ranges)
    assert ranges[0] == (0, min(per, n_items))


def test_shard_writer_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(n, 5)).astype(np.float32) for n in (3, 0, 7, 1)]
    with FeatureShardWriter(tmp_path, "train", 1, 4) as shard:
        for block in blocks:
            shard.append(block)
    npy, lens = shard_paths(tmp_path, "train", 1, 4)
    assert npy.name == "train_1_4.npy" and lens.name == "train_1_4.len"
    assert lens.read_text().split() == ["3", "0", "7", "1"]
    assert np.load(npy).shape == (11, 5)  # a plain .npy any numpy reads
    feats, lengths = read_shard(tmp_path, "train", 1, 4)
    assert lengths == [3, 0, 7, 1]
    for got, want in zip(iter_shard_items(feats, lengths), blocks):
        np.testing.assert_array_equal(got, want)


def test_failed_shard_leaves_nothing(tmp_path) -> None:
    with pytest.raises(RuntimeError):
        with FeatureShardWriter(tmp_path, "valid", 0, 1) as shard:
            shard.append(np.ones((4, 3)))
            raise RuntimeError("killed")
    assert not shard_exists(tmp_path, "valid", 0, 1)
    assert list(tmp_path.iterdir()) == []


def test_shard_dim_mismatch_and_corrupt_lengths(tmp_path) -> None:
    with pytest.raises(FeatureShardError):
        with FeatureShardWriter(tmp_path, "x", 0, 1) as shard:
            shard.append(np.ones((2, 3)))
            shard.append(np.ones((2, 4)))
    with FeatureShardWriter(tmp_path, "x", 0, 1) as shard:
        shard.append(np.ones((2, 3)))
    shard_paths(tmp_path, "x", 0, 1)[1].write_text("5\n")
    with pytest.raises(FeatureShardError, match="2 rows"):
        read_shard(tmp_path, "x", 0, 1)
