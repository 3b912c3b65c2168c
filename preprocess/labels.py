"""Frame labels from a fitted k-means: per-shard dumps, joined in manifest order.

Per shard (the reference's ``dump_km_label.py``)::

    {lab_dir}/{split}_{rank}_{nshard}.{label}    one line per item: its frames' cluster ids

and once every shard is labelled, the files the training task reads::

    {out_dir}/{split}.{label}       one line per manifest item, in manifest order, with one id per
                                    feature frame (100 Hz for MFCC, 25 Hz for model features)
    {out_dir}/dict.{label}.txt      every id 0 .. K-1 (fairseq dictionary, id 0 included)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from sf_fairseq.data.manifest import (
    Manifest,
    ManifestError,
    format_cluster_ids,
    write_cluster_dictionary,
    write_label_lines,
)
from sf_fairseq.data.rates import FPS

from .feature_shards import iter_shard_items, read_shard
from .kmeans import FeatureKMeans

logger = logging.getLogger(__name__)

# The training dataset keeps an item only if its label and video durations differ by less.
DURATION_TOLERANCE_S = 0.1


def shard_label_path(lab_dir: str | os.PathLike, split: str, rank: int, nshard: int, label: str) -> Path:
    return Path(lab_dir) / f"{split}_{rank}_{nshard}.{label}"


def dump_shard_labels(
    model: FeatureKMeans,
    feat_dir: str | os.PathLike,
    lab_dir: str | os.PathLike,
    split: str,
    rank: int,
    nshard: int,
    label: str,
) -> Path:
    """Label every frame of one feature shard; writes its label file atomically and returns it."""
    feats, lengths = read_shard(feat_dir, split, rank, nshard)
    ids = model.predict(feats) if len(feats) else np.zeros(0, dtype=np.int64)
    path = shard_label_path(lab_dir, split, rank, nshard, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_label_lines(path, (format_cluster_ids(block) for block in iter_shard_items(ids, lengths)))
    return path


def _check_shard_lines(path: Path, expected: int) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"missing label shard {path}")
    with open(path, encoding="utf-8") as f:
        n_lines = sum(1 for _ in f)
    if n_lines != expected:
        raise ManifestError(f"{path}: {n_lines} lines, its feature shard has {expected} items")


def _read_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield line.rstrip("\n")


def join_shard_labels(
    feat_dir: str | os.PathLike,
    lab_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    split: str,
    nshard: int,
    label: str,
    n_items: int,
) -> None:
    """Concatenate the shard label files of ``split`` in rank order into ``out_path``, checking
    each against its feature shard and the total against the manifest's ``n_items`` first."""
    counts = [len(read_shard(feat_dir, split, rank, nshard)[1]) for rank in range(nshard)]
    if sum(counts) != n_items:
        raise ManifestError(
            f"{feat_dir}: feature shards of {split!r} hold {sum(counts)} items, manifest has {n_items}"
        )
    paths = [shard_label_path(lab_dir, split, rank, nshard, label) for rank in range(nshard)]
    for path, count in zip(paths, counts):
        _check_shard_lines(path, count)
    write_label_lines(out_path, (line for path in paths for line in _read_lines(path)))


def write_label_dictionary(out_dir: str | os.PathLike, label: str, n_clusters: int) -> Path:
    """``dict.{label}.txt`` listing every cluster id ``0 .. n_clusters-1``."""
    path = Path(out_dir) / f"dict.{label}.txt"
    write_cluster_dictionary(path, n_clusters)
    return path


def label_duration_mismatches(
    manifest: Manifest, label_lines: list[str], label_rate: float, video_rate: float = float(FPS),
    tolerance_s: float = DURATION_TOLERANCE_S,
) -> list[str]:
    """Ids of the items whose label duration is not within ``tolerance_s`` of their video
    duration — the items the training dataset (``AVHubertDataset``) will skip."""
    if len(label_lines) != len(manifest):
        raise ManifestError(f"{len(label_lines)} label lines for {len(manifest)} manifest items")
    return [
        item.id
        for item, line in zip(manifest.items, label_lines)
        if not abs(len(line.split()) / label_rate - item.n_video_frames / video_rate) < tolerance_s
    ]
