"""Helpers of the training tests: compose a config as fairseq-hydra-train does, add label sets to a
generated corpus, run one training step through fairseq's Trainer, run fairseq-hydra-train."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import sf_fairseq  # noqa: F401  (registers the task, model and criteria)
from fairseq.dataclass.initialize import add_defaults, hydra_init
from sf_fairseq.data.manifest import (
    format_cluster_ids,
    read_manifest,
    write_cluster_dictionary,
    write_label_lines,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "sf_fairseq" / "config" / "pretrain"
USER_DIR = REPO / "user_dir"


def compose_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """``{name}.yaml`` composed and merged into fairseq's dataclasses as fairseq-hydra-train does."""
    hydra_init(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Hydra 1.1 compatibility notices
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.1"):
            cfg = compose(config_name=name, overrides=list(overrides))
    add_defaults(cfg)
    return cfg


def add_label_set(data: Path, label_dir: Path, label: str, n_clusters: int, rate: int,
                  splits: tuple[str, ...] = ("train", "valid"), seed: int = 1) -> None:
    """Random cluster ids at ``rate`` Hz for every item of ``{data}/{split}.tsv`` into
    ``{label_dir}/{split}.{label}`` and ``dict.{label}.txt``."""
    rng = np.random.default_rng(seed)
    label_dir.mkdir(parents=True, exist_ok=True)
    for split in splits:
        manifest = read_manifest(data / f"{split}.tsv")
        lines = [format_cluster_ids(rng.integers(0, n_clusters, item.n_video_frames * rate // 25))
                 for item in manifest.items]
        write_label_lines(label_dir / f"{split}.{label}", lines)
    write_cluster_dictionary(label_dir / f"dict.{label}.txt", n_clusters)


def hydra_train(config: str, overrides: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``fairseq-hydra-train`` with the user dir; fail with the log tail unless it succeeds."""
    command = [
        str(Path(sys.executable).with_name("fairseq-hydra-train")),
        "--config-dir", str(CONFIG_DIR), "--config-name", config,
        f"common.user_dir={USER_DIR}", *overrides,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result
