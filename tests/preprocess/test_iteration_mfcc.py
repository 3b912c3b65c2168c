"""The one-iteration CLI end to end on generated wavs with MFCC features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sf_fairseq.data.manifest import ManifestItem, read_label_lines, write_manifest
from sf_fairseq.preprocess import iteration, iteration_engine
from sf_fairseq.preprocess.feature_shards import shard_exists, shard_paths

K = 6
FAST_KMEANS = ["--kmeans-n-init", "1", "--kmeans-batch-size", "512"]


def _make_manifest_dir(root: Path, n_frames_per_item: dict[str, list[int]]) -> Path:
    """Wavs of n_frames * 640 samples (25 fps video length) and manifests pointing at them."""
    rng = np.random.default_rng(0)
    data = root / "data"
    (data / "audio").mkdir(parents=True)
    for split, frame_counts in n_frames_per_item.items():
        items = []
        for i, n_frames in enumerate(frame_counts):
            n = n_frames * 640
            t = np.arange(n) / 16000
            wav = 0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.02 * rng.normal(size=n)
            sf.write(data / "audio" / f"{split}{i}.wav", wav, 16000, subtype="PCM_16")
            items.append(ManifestItem(f"{split}{i}", f"video/{split}{i}.mp4", f"audio/{split}{i}.wav",
                                      n_frames, n))
        write_manifest(data / f"{split}.tsv", str(data), items)
    return data


def _run(data: Path, out: Path, *extra: str) -> int:
    return iteration.main([str(data), "--out-dir", str(out), "--feature", "mfcc",
                           "--n-clusters", str(K), "--percent", "-1", *FAST_KMEANS, *extra])


@pytest.fixture()
def manifest_dir(tmp_path) -> Path:
    return _make_manifest_dir(tmp_path, {"train": [30, 25, 41, 12, 50, 33, 27], "valid": [20, 26]})


def test_mfcc_iteration_writes_a_label_dir(tmp_path, manifest_dir) -> None:
    out = tmp_path / "labels"
    assert _run(manifest_dir, out, "--nshard", "3") == 0
    for split, frames in {"train": [30, 25, 41, 12, 50, 33, 27], "valid": [20, 26]}.items():
        assert (out / f"{split}.tsv").read_bytes() == (manifest_dir / f"{split}.tsv").read_bytes()
        lines = read_label_lines(out / f"{split}.mfcc")
        assert len(lines) == len(frames)
        for n_video, line in zip(frames, lines):
            ids = [int(x) for x in line.split()]
            # One label per 100 Hz MFCC frame of the item's audio (n_video * 640 samples).
            assert len(ids) == 1 + (n_video * 640 - 400) // 160
            assert all(0 <= k < K for k in ids)
    dictionary = (out / "dict.mfcc.txt").read_text().splitlines()
    assert [line.split()[0] for line in dictionary] == [str(k) for k in range(K)]
    info = json.loads((out / "mfcc.iteration.json").read_text())
    assert info["label_rate"] == 100 and info["n_clusters"] == K and info["label"] == "mfcc"
    assert info["splits"]["train"]["items"] == 7 and info["splits"]["valid"]["duration_mismatches"] == 0
    used = {k for line in read_label_lines(out / "train.mfcc") for k in line.split()}
    assert len(used) > 1


def test_rerun_reuses_finished_steps(tmp_path, manifest_dir, monkeypatch) -> None:
    out = tmp_path / "labels"
    assert _run(manifest_dir, out, "--nshard", "2") == 0
    work = out / "mfcc_work"
    km_mtime = (work / "kmeans.joblib").stat().st_mtime_ns
    labels_before = (out / "train.mfcc").read_text()

    def no_features(*args, **kwargs):
        raise AssertionError("features recomputed")

    monkeypatch.setattr(iteration_engine.MfccFeatureReader, "iter_features", no_features)
    assert _run(manifest_dir, out, "--nshard", "2") == 0
    assert (work / "kmeans.joblib").stat().st_mtime_ns == km_mtime
    assert (out / "train.mfcc").read_text() == labels_before

    # Other k-means settings against the recorded ones: refused, then redone with --overwrite.
    assert iteration.main([str(manifest_dir), "--out-dir", str(out), "--feature", "mfcc",
                           "--n-clusters", str(K + 1), "--percent", "-1", *FAST_KMEANS,
                           "--nshard", "2"]) == 1
    assert iteration.main([str(manifest_dir), "--out-dir", str(out), "--feature", "mfcc",
                           "--n-clusters", str(K + 1), "--percent", "-1", *FAST_KMEANS,
                           "--nshard", "2", "--overwrite"]) == 0
    assert len((out / "dict.mfcc.txt").read_text().splitlines()) == K + 1


def test_rank_dumps_one_shard_then_resume(tmp_path, manifest_dir) -> None:
    out = tmp_path / "labels"
    assert _run(manifest_dir, out, "--nshard", "3", "--rank", "1", "--splits", "train") == 0
    feat_dir = out / "mfcc_work" / "features"
    assert [shard_exists(feat_dir, "train", r, 3) for r in range(3)] == [False, True, False]
    assert not (out / "train.mfcc").exists()
    shard1 = shard_paths(feat_dir, "train", 1, 3)[0].stat().st_mtime_ns
    # Shard 1 holds items 3..5 (ceil(7 / 3) = 3 per shard).
    assert shard_paths(feat_dir, "train", 1, 3)[1].read_text().split() == [
        str(1 + (n * 640 - 400) // 160) for n in (12, 50, 33)]
    assert _run(manifest_dir, out, "--nshard", "3", "--splits", "train") == 0
    assert shard_paths(feat_dir, "train", 1, 3)[0].stat().st_mtime_ns == shard1
    assert len(read_label_lines(out / "train.mfcc")) == 7


def test_labels_in_manifest_dir_and_bad_input(tmp_path, manifest_dir) -> None:
    assert _run(manifest_dir, manifest_dir, "--splits", "valid", "--label-name", "km") == 0
    assert len(read_label_lines(manifest_dir / "valid.km")) == 2
    assert (manifest_dir / "dict.km.txt").is_file()
    (manifest_dir / "audio" / "train3.wav").unlink()
    assert _run(manifest_dir, tmp_path / "o2") == 1  # missing wav: error, no labels
    assert not (tmp_path / "o2" / "train.mfcc").exists()
    assert iteration.main([str(manifest_dir), "--out-dir", str(tmp_path / "o3"), "--feature",
                           "model", "--n-clusters", "4"]) == 1  # no checkpoint
    assert _run(manifest_dir, tmp_path / "o4", "--label-name", "../km") == 1
    assert not (tmp_path / "o4").exists()
