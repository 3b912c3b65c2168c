"""Label shards from a k-means model, joined in manifest order, and the cluster dictionary."""

from __future__ import annotations

import numpy as np
import pytest

from sf_fairseq.data.manifest import Manifest, ManifestError, ManifestItem, read_label_lines
from sf_fairseq.preprocess.feature_shards import FeatureShardWriter, shard_range
from sf_fairseq.preprocess.kmeans import FeatureKMeans
from sf_fairseq.preprocess.labels import (
    dump_shard_labels,
    join_shard_labels,
    label_duration_mismatches,
    shard_label_path,
    write_label_dictionary,
)

K = 12
LENGTHS = [5, 1, 9, 4, 4, 7, 2, 3, 6, 8, 2]  # frames of each of 11 items


def _model() -> FeatureKMeans:
    # Centroid k sits at (k, k): a frame of value v is labelled round(v) (clipped to K-1).
    model = FeatureKMeans(K)
    model.cluster_centers_ = np.repeat(np.arange(K, dtype=np.float32)[:, None], 2, axis=1)
    model.n_features_in_ = 2
    return model


def _write_shards(feat_dir, nshard: int) -> None:
    # Item i's frames carry the value i % K, so its labels say which item they came from.
    for rank in range(nshard):
        start, end = shard_range(len(LENGTHS), nshard, rank)
        with FeatureShardWriter(feat_dir, "train", rank, nshard) as shard:
            for i in range(start, end):
                shard.append(np.full((LENGTHS[i], 2), i % K, dtype=np.float32))


@pytest.mark.parametrize("nshard", [1, 3, 4])
def test_labels_joined_in_manifest_order(tmp_path, nshard: int) -> None:
    feat_dir, lab_dir = tmp_path / "feats", tmp_path / "labs"
    _write_shards(feat_dir, nshard)
    model = _model()
    for rank in range(nshard):
        path = dump_shard_labels(model, feat_dir, lab_dir, "train", rank, nshard, "km")
        assert path == shard_label_path(lab_dir, "train", rank, nshard, "km")
    out = tmp_path / "train.km"
    join_shard_labels(feat_dir, lab_dir, out, "train", nshard, "km", n_items=len(LENGTHS))
    lines = read_label_lines(out)
    assert len(lines) == len(LENGTHS)
    for i, line in enumerate(lines):
        ids = line.split()
        assert len(ids) == LENGTHS[i]  # one label per feature frame
        assert set(ids) == {str(i % K)}  # and in manifest order


def test_join_checks_shards(tmp_path) -> None:
    feat_dir, lab_dir = tmp_path / "feats", tmp_path / "labs"
    _write_shards(feat_dir, 2)
    dump_shard_labels(_model(), feat_dir, lab_dir, "train", 0, 2, "km")
    with pytest.raises(FileNotFoundError, match="train_1_2.km"):
        join_shard_labels(feat_dir, lab_dir, tmp_path / "train.km", "train", 2, "km", len(LENGTHS))
    dump_shard_labels(_model(), feat_dir, lab_dir, "train", 1, 2, "km")
    with pytest.raises(ManifestError, match="manifest has 12"):
        join_shard_labels(feat_dir, lab_dir, tmp_path / "train.km", "train", 2, "km", 12)
    shard_label_path(lab_dir, "train", 1, 2, "km").write_text("1 2\n")
    with pytest.raises(ManifestError, match="1 lines"):
        join_shard_labels(feat_dir, lab_dir, tmp_path / "train.km", "train", 2, "km", len(LENGTHS))
    assert list(tmp_path.glob("train.km*")) == []  # nothing half-written


def test_dictionary_lists_every_id_including_zero(tmp_path) -> None:
    path = write_label_dictionary(tmp_path, "km", K)
    assert path.name == "dict.km.txt"
    lines = path.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [str(k) for k in range(K)]
    assert all(len(line.split()) == 2 and int(line.split()[1]) > 0 for line in lines)


def test_duration_mismatches() -> None:
    items = [ManifestItem(f"u{i}", "v", "a", 25, 16000) for i in range(3)]
    lines = [" ".join(["0"] * n) for n in (98, 100, 80)]  # 0.98 s, 1.0 s, 0.8 s of 100 Hz labels
    assert label_duration_mismatches(Manifest("/", items), lines, label_rate=100) == ["u2"]
    with pytest.raises(ManifestError):
        label_duration_mismatches(Manifest("/", items), lines[:2], label_rate=100)
