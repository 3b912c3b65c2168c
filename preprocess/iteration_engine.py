"""One iteration of AV-HuBERT's target refinement: features → k-means → labels → dictionary
(the engine of ``sf-cluster-iteration``, :mod:`.iteration`: :class:`IterationConfig` →
:meth:`Iteration.run`).

Given a manifest directory (``{split}.tsv`` files), one command writes a label directory that
``fairseq-hydra-train`` uses as it is (``task.data`` and ``task.label_dir`` both point at it)::

    {out_dir}/{split}.tsv              the manifests (copied, unless out_dir is the manifest dir)
    {out_dir}/{split}.{label}          one line of cluster ids per manifest item
    {out_dir}/dict.{label}.txt         ids 0 .. K-1
    {out_dir}/{label}.iteration.json   label_rate (100 for MFCC, 25 for model features), K, the
                                       feature source, and per split the item count

Iteration 1 clusters 39-d MFCCs (100 Hz labels); later iterations cluster layer ``--layer`` of
the previous model (25 Hz labels). Intermediate files go to ``--work-dir``: feature shards
(``features/{split}_{rank}_{nshard}.npy`` + ``.len``), ``kmeans.joblib``, label shards. Each
finished step is recorded with the settings it was made with, and a rerun reuses what matches:
a killed run resumes at the first unfinished shard. Settings that differ from a recorded step
are an error unless ``--overwrite`` is given. With ``--rank R`` only shard R's features are
dumped (one task of a cluster job array); a final run without ``--rank`` does the rest.

Example (iteration 1, then iteration 2 from the model trained on its labels)::

    python -m sf_fairseq.preprocess.iteration data/433h --out-dir labels/it1 \\
        --feature mfcc --n-clusters 100
    python -m sf_fairseq.preprocess.iteration data/433h --out-dir labels/it2 \\
        --feature model --checkpoint it1/checkpoint_last.pt --layer 9 --n-clusters 100
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from sf_fairseq.data.manifest import Manifest, ManifestItem, read_label_lines, read_manifest
from sf_fairseq.resume import SettingsMismatch, atomic_path, atomic_write_text, check_fingerprint, write_fingerprint

from .feature_shards import FeatureShardWriter, shard_exists, shard_paths, shard_range
from .features_mfcc import MFCC_RATE, MfccFeatureReader
from .features_model import MODEL_FEATURE_RATE, ModelFeatureReader
from .kmeans import FeatureKMeans, load_kmeans, sample_shard_features, save_kmeans
from .labels import (
    dump_shard_labels,
    join_shard_labels,
    label_duration_mismatches,
    shard_label_path,
    write_label_dictionary,
)

logger = logging.getLogger(__name__)

LABEL_RATES = {"mfcc": MFCC_RATE, "model": MODEL_FEATURE_RATE}


class IterationError(RuntimeError):
    """The inputs or the work directory do not allow the iteration to run."""


class FeatureReader(Protocol):
    feature_rate: int

    def iter_features(self, manifest: Manifest, items: Sequence[ManifestItem]) -> Iterator[np.ndarray]:
        ...


@dataclasses.dataclass
class IterationConfig:
    """Settings of one iteration (the CLI's options)."""

    manifest_dir: Path
    out_dir: Path
    feature: str
    n_clusters: int
    checkpoint: Path | None = None
    layer: int | None = None
    label_name: str | None = None
    splits: list[str] | None = None
    fit_split: str | None = None
    percent: float = 0.1
    seed: int = 0
    nshard: int = 1
    rank: int | None = None
    work_dir: Path | None = None
    device: str = "cpu"
    batch_frames: int = 1000
    workers: int = 2
    trust_checkpoint: bool = False
    overwrite: bool = False
    kmeans_batch_size: int = 10000
    kmeans_max_iter: int = 100
    kmeans_n_init: int = 20
    kmeans_max_no_improvement: int = 100

    def __post_init__(self) -> None:
        if self.feature not in LABEL_RATES:
            raise IterationError(f"--feature must be one of {sorted(LABEL_RATES)}, got {self.feature!r}")
        if self.feature == "model" and (self.checkpoint is None or self.layer is None):
            raise IterationError("--feature model needs --checkpoint and --layer")
        if self.feature == "mfcc" and (self.checkpoint is not None or self.layer is not None):
            raise IterationError("--checkpoint/--layer only apply to --feature model")
        if self.n_clusters < 2:
            raise IterationError(f"--n-clusters must be >= 2, got {self.n_clusters}")
        if self.percent == 0 or self.percent > 1:
            raise IterationError(f"--percent must be in (0, 1] (or negative for all), got {self.percent}")
        if self.nshard < 1 or (self.rank is not None and not 0 <= self.rank < self.nshard):
            raise IterationError(f"need nshard >= 1 and 0 <= rank < nshard, got {self.nshard}/{self.rank}")
        self.label_name = self.label_name or ("mfcc" if self.feature == "mfcc" else "km")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.label_name) or self.label_name in ("tsv", "json"):
            raise IterationError(f"--label-name must be a plain file extension, got {self.label_name!r}")
        self.work_dir = self.work_dir or self.out_dir / f"{self.label_name}_work"

    @property
    def label_rate(self) -> int:
        return LABEL_RATES[self.feature]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _reusable(record: Path, fingerprint: dict[str, Any], overwrite: bool, what: str) -> bool:
    """True if ``record`` says the step was made with ``fingerprint``; False means the step's
    outputs must be (re)made (no record, or other settings and ``overwrite``). Other settings
    without ``overwrite`` raise, naming the differing settings (:func:`resume.check_fingerprint`)."""
    try:
        return check_fingerprint(record, fingerprint, what, overwrite,
                                 hint="pass --overwrite to redo them, or use another --work-dir")
    except SettingsMismatch as err:
        raise IterationError(str(err)) from err


class Iteration:
    """Runs the steps of one iteration over the splits of a manifest directory."""

    def __init__(self, cfg: IterationConfig) -> None:
        self.cfg = cfg
        self.label = str(cfg.label_name)
        self.work_dir = Path(cfg.work_dir or cfg.out_dir)
        self.feat_dir = self.work_dir / "features"
        self.lab_dir = self.work_dir / "labels"
        self.splits = cfg.splits or sorted(p.stem for p in cfg.manifest_dir.glob("*.tsv"))
        if not self.splits:
            raise IterationError(f"{cfg.manifest_dir}: no {{split}}.tsv manifests found")
        self.fit_split = cfg.fit_split or ("train" if "train" in self.splits else self.splits[0])
        if self.fit_split not in self.splits:
            raise IterationError(f"--fit-split {self.fit_split!r} is not among the splits {self.splits}")
        self.manifests: dict[str, Manifest] = {}
        for split in self.splits:
            path = cfg.manifest_dir / f"{split}.tsv"
            if not path.is_file():
                raise IterationError(f"missing manifest {path}")
            self.manifests[split] = read_manifest(path)
        self._reader: FeatureReader | None = None

    # -- fingerprints: what each step's outputs depend on ----------------------------------

    def _source_fingerprint(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.feature == "mfcc":
            return {"feature": "mfcc"}
        ckpt = Path(str(cfg.checkpoint)).resolve()
        if not ckpt.is_file():
            raise IterationError(f"checkpoint not found: {ckpt}")
        stat = ckpt.stat()
        return {"feature": "model", "checkpoint": str(ckpt), "checkpoint_size": stat.st_size,
                "checkpoint_mtime_ns": stat.st_mtime_ns, "layer": cfg.layer}

    def _features_fingerprint(self, split: str) -> dict[str, Any]:
        return {**self._source_fingerprint(), "nshard": self.cfg.nshard,
                "manifest_sha256": _sha256(self.cfg.manifest_dir / f"{split}.tsv")}

    def _kmeans_fingerprint(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"features": self._features_fingerprint(self.fit_split), "fit_split": self.fit_split,
                "n_clusters": cfg.n_clusters, "percent": cfg.percent, "seed": cfg.seed,
                "batch_size": cfg.kmeans_batch_size, "max_iter": cfg.kmeans_max_iter,
                "n_init": cfg.kmeans_n_init, "max_no_improvement": cfg.kmeans_max_no_improvement}

    # -- steps ------------------------------------------------------------------------------

    def _feature_reader(self) -> FeatureReader:
        if self._reader is None:
            cfg = self.cfg
            if cfg.feature == "mfcc":
                self._reader = MfccFeatureReader()
            else:
                logger.info("loading %s (layer %d) on %s", cfg.checkpoint, cfg.layer, cfg.device)
                self._reader = ModelFeatureReader(
                    str(cfg.checkpoint), int(cfg.layer or 0), device=cfg.device,
                    max_batch_frames=cfg.batch_frames, workers=cfg.workers,
                    trust_checkpoint=cfg.trust_checkpoint,
                )
        return self._reader

    def dump_features(self, split: str, ranks: Sequence[int]) -> None:
        """Write the feature shards ``ranks`` of ``split`` that are not already there."""
        nshard, manifest = self.cfg.nshard, self.manifests[split]
        record = self.feat_dir / f"{split}.json"
        fingerprint = self._features_fingerprint(split)
        if not _reusable(record, fingerprint, self.cfg.overwrite, f"{split} features"):
            for rank in range(nshard):
                for path in shard_paths(self.feat_dir, split, rank, nshard):
                    path.unlink(missing_ok=True)
            write_fingerprint(record, fingerprint)
        for rank in ranks:
            if shard_exists(self.feat_dir, split, rank, nshard):
                continue
            start, end = shard_range(len(manifest), nshard, rank)
            items = manifest.items[start:end]
            reader = self._feature_reader()
            with FeatureShardWriter(self.feat_dir, split, rank, nshard) as shard, tqdm(
                total=len(items), unit="item", desc=f"features {split} {rank + 1}/{nshard}"
            ) as bar:
                for item, feats in zip(items, reader.iter_features(manifest, items)):
                    if self.cfg.feature == "model" and len(feats) != item.n_video_frames:
                        logger.warning("%s: %d video frames decoded, manifest says %d",
                                       item.id, len(feats), item.n_video_frames)
                    shard.append(feats)
                    bar.update()

    def fit_kmeans(self) -> FeatureKMeans:
        """Fit k-means on the sampled features of the fit split, or reuse the saved model."""
        cfg = self.cfg
        model_path, record = self.work_dir / "kmeans.joblib", self.work_dir / "kmeans.json"
        fingerprint = self._kmeans_fingerprint()
        if _reusable(record, fingerprint, cfg.overwrite, "a k-means model") and model_path.is_file():
            logger.info("reusing %s", model_path)
            return load_kmeans(model_path)
        sample = sample_shard_features(self.feat_dir, self.fit_split, cfg.nshard, cfg.percent, cfg.seed)
        logger.info("fitting k-means (K=%d) on %d frames of %s", cfg.n_clusters, len(sample),
                    self.fit_split)
        model = FeatureKMeans(
            cfg.n_clusters, batch_size=cfg.kmeans_batch_size, max_iter=cfg.kmeans_max_iter,
            n_init=cfg.kmeans_n_init, max_no_improvement=cfg.kmeans_max_no_improvement,
            random_state=cfg.seed,
        ).fit(sample)
        save_kmeans(model, model_path)
        write_fingerprint(record, fingerprint)
        return model

    def dump_labels(self, model: FeatureKMeans, split: str) -> None:
        """Label every shard of ``split`` (reusing finished ones) and join them into the out dir."""
        cfg, label = self.cfg, self.label
        record = self.lab_dir / f"{split}.{label}.json"
        # The model file's hash, so a refitted model never reuses the old model's labels.
        fingerprint = {"kmeans_sha256": _sha256(self.work_dir / "kmeans.joblib"),
                       "features": self._features_fingerprint(split)}
        # Labels only derive from the features and model checked above: redo stale ones freely.
        reuse = _reusable(record, fingerprint, True, f"{split} labels")
        if not reuse:
            write_fingerprint(record, fingerprint)
        for rank in tqdm(range(cfg.nshard), desc=f"labels {split}", unit="shard"):
            path = shard_label_path(self.lab_dir, split, rank, cfg.nshard, label)
            if not (reuse and path.is_file()):
                dump_shard_labels(model, self.feat_dir, self.lab_dir, split, rank, cfg.nshard, label)
        join_shard_labels(self.feat_dir, self.lab_dir, cfg.out_dir / f"{split}.{label}", split,
                          cfg.nshard, label, len(self.manifests[split]))

    def copy_manifests(self) -> None:
        """Put each ``{split}.tsv`` beside its labels (the task reads both from one dir)."""
        if self.cfg.out_dir.resolve() == self.cfg.manifest_dir.resolve():
            return
        for split in self.splits:
            src, dst = self.cfg.manifest_dir / f"{split}.tsv", self.cfg.out_dir / f"{split}.tsv"
            if dst.is_file() and _sha256(dst) != _sha256(src):
                if not self.cfg.overwrite:
                    raise IterationError(f"{dst} differs from {src}; pass --overwrite to replace it")
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)

    def run(self) -> dict[str, Any]:
        """All steps (or only the features of ``cfg.rank``). Returns the recorded summary."""
        cfg = self.cfg
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        ranks = range(cfg.nshard) if cfg.rank is None else [cfg.rank]
        for split in self.splits:
            self.dump_features(split, ranks)
        if cfg.rank is not None:
            return {"features_done": {s: [r for r in range(cfg.nshard)
                                          if shard_exists(self.feat_dir, s, r, cfg.nshard)]
                                      for s in self.splits}}
        self.copy_manifests()
        model = self.fit_kmeans()
        summary: dict[str, Any] = {
            "label": cfg.label_name, "label_rate": cfg.label_rate, "n_clusters": cfg.n_clusters,
            **self._source_fingerprint(), "percent": cfg.percent, "seed": cfg.seed,
            "fit_split": self.fit_split, "kmeans_inertia": model.inertia_, "splits": {},
        }
        for split in self.splits:
            self.dump_labels(model, split)
            lines = read_label_lines(cfg.out_dir / f"{split}.{cfg.label_name}")
            mismatched = label_duration_mismatches(self.manifests[split], lines, cfg.label_rate)
            if mismatched:
                logger.warning("%s: %d items have labels 0.1 s or more off their video length "
                               "(training will skip them), e.g. %s", split, len(mismatched),
                               ", ".join(mismatched[:5]))
            summary["splits"][split] = {"items": len(lines), "frames": sum(len(l.split()) for l in lines),
                                        "duration_mismatches": len(mismatched)}
        write_label_dictionary(cfg.out_dir, self.label, cfg.n_clusters)
        _write_json(cfg.out_dir / f"{cfg.label_name}.iteration.json", summary)
        return summary
