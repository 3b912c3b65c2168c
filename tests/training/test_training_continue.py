"""Continuing from a checkpoint with ``fairseq-hydra-train``: the next iteration's labels through
``checkpoint.finetune_from_model``, the alignment criterion, and two-process training on CPU."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fairseq import checkpoint_utils

from sf_test_media import write_corpus
from sf_training_helpers import CONFIG_DIR, USER_DIR, add_label_set, hydra_train

# A few short updates; no validation, and one checkpoint (checkpoint_last.pt) at the end.
SHORT = ["dataset.max_tokens=60", "++task.max_trim_sample_size=16", "++task.image_crop_size=44",
         "lr_scheduler.warmup_updates=0", "dataset.disable_validation=true", "checkpoint.save_interval=1000"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """km labels with 10 clusters (the fixture's dictionary) and mfcc labels with 20."""
    root = write_corpus(tmp_path_factory.mktemp("corpus"), {"train": 4, "valid": 2}, frames=(20, 28))
    add_label_set(root, root, "mfcc", 20, 25)
    return root


def _fixture(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"


def _data(corpus: Path, save_dir: Path) -> list[str]:
    return [f"task.data={corpus}", f"task.label_dir={corpus}", f"checkpoint.save_dir={save_dir}"]


@pytest.mark.slow
def test_next_iteration_with_new_labels_starts_from_a_checkpoint(corpus: Path, tmp_path: Path,
                                                                 shared_dir: Path) -> None:
    fixture = _fixture(shared_dir)
    save_dir = tmp_path / "iter2"
    result = hydra_train("tiny_cpu", [
        *_data(corpus, save_dir), "task.labels=[mfcc]", f"checkpoint.finetune_from_model={fixture}",
        "optimization.max_update=2", *SHORT,
    ])
    log = result.stdout + result.stderr
    assert "re-initialising label_embs_concat" in log
    state = checkpoint_utils.load_checkpoint_to_cpu(str(save_dir / "checkpoint_last.pt"))
    previous = checkpoint_utils.load_checkpoint_to_cpu(str(fixture))["model"]
    model = state["model"]
    # Optimizer, scheduler and meters restart: 2 updates counted from 0.
    assert state["optimizer_history"][-1]["num_updates"] == 2
    assert model["label_embs_concat"].shape == (24, 32) and len(state["task_state"]["dictionaries"][0]) == 24
    # The encoder starts from the checkpoint: 2 Adam steps at lr 0.002 move a weight by <= 0.004,
    # while a fresh initialisation would differ by about the weights' own scale.
    for key in ("encoder.layers.1.fc1.weight", "feature_extractor_video.resnet.trunk.layer4.1.conv2.weight",
                "post_extract_proj.weight"):
        assert (model[key] - previous[key]).abs().max() < 0.0045, key
        assert (model[key] - previous[key]).abs().max() > 0, key


@pytest.mark.slow
def test_alignment_criterion_continues_pretraining(corpus: Path, tmp_path: Path, shared_dir: Path) -> None:
    save_dir = tmp_path / "aligned"
    result = hydra_train("tiny_cpu", [
        *_data(corpus, save_dir), f"checkpoint.finetune_from_model={_fixture(shared_dir)}",
        "criterion._name=av_hubert_alignment", "+criterion.alignment_weight=0.5",
        "+criterion.alignment_max_shift=4", "+criterion.alignment_clip_weight=1.0", "optimization.max_update=3",
        "common.log_interval=1", *SHORT,
    ])
    log = result.stdout + result.stderr
    # Same labels: nothing re-initialised.
    assert "alignment_nce" in log and "alignment_clip_nce" in log and "re-initialising" not in log
    state = checkpoint_utils.load_checkpoint_to_cpu(str(save_dir / "checkpoint_last.pt"))
    assert state["optimizer_history"][-1]["num_updates"] == 3
    assert state["optimizer_history"][-1]["criterion_name"] == "AVAlignmentCriterion"
    assert state["cfg"]["criterion"]["alignment_weight"] == 0.5
    assert state["cfg"]["criterion"]["alignment_max_shift"] == 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_with_gloo(corpus: Path, tmp_path: Path) -> None:
    port = _free_port()
    save_dir = tmp_path / "ddp"
    processes = []
    for rank in range(2):
        command = [
            str(Path(sys.executable).with_name("fairseq-hydra-train")),
            "--config-dir", str(CONFIG_DIR), "--config-name", "tiny_cpu", f"common.user_dir={USER_DIR}",
            *_data(corpus, save_dir), "optimization.max_update=3", *SHORT,
            "distributed_training.distributed_world_size=2", "distributed_training.distributed_backend=gloo",
            f"distributed_training.distributed_init_method=tcp://127.0.0.1:{port}",
            "distributed_training.distributed_no_spawn=true", f"distributed_training.distributed_rank={rank}",
            "distributed_training.ddp_backend=legacy_ddp", f"hydra.run.dir={tmp_path / f'hydra{rank}'}",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks share the machine's cores
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          env=env))
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for rank, (process, log) in enumerate(zip(processes, logs)):
        assert process.returncode == 0, f"rank {rank}:\n{log[-4000:]}"
    assert "training on 2 devices" in logs[0] and "done training" in logs[0]  # fairseq logs on rank 0 only
    state = checkpoint_utils.load_checkpoint_to_cpu(str(save_dir / "checkpoint_last.pt"))
    assert state["optimizer_history"][-1]["num_updates"] == 3
    assert state["cfg"]["distributed_training"]["distributed_world_size"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
