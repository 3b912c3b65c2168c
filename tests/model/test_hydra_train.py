"""``fairseq-hydra-train`` with the tiny config and the user dir, end to end on generated data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sf_fairseq  # noqa: F401  (registers the plugin in fairseq)
from sf_fairseq.checkpoint import load_encoder
from sf_test_media import write_corpus

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "sf_fairseq" / "config" / "pretrain"


def _hydra_train(data: Path, save_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).with_name("fairseq-hydra-train")),
        "--config-dir", str(CONFIG_DIR), "--config-name", "tiny_cpu",
        f"task.data={data}", f"task.label_dir={data}", f"common.user_dir={REPO / 'user_dir'}",
        f"checkpoint.save_dir={save_dir}", *overrides,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_tiny_config_trains_saves_and_loads_back(tmp_path: Path) -> None:
    data = write_corpus(tmp_path / "data", {"train": 6, "valid": 2})
    save_dir = tmp_path / "ckpt"
    result = _hydra_train(data, save_dir, "optimization.max_update=6", "dataset.max_tokens=120")
    log = result.stdout + result.stderr
    assert "done training" in log
    checkpoint = save_dir / "checkpoint_last.pt"
    assert checkpoint.is_file()

    from fairseq import checkpoint_utils

    state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))
    assert state["optimizer_history"][-1]["num_updates"] == 6
    model, task_cfg = load_encoder(checkpoint)
    assert task_cfg["stack_order_audio"] == 4
    video = torch.randn(1, 1, 20, 88, 88)
    with torch.no_grad():
        features, _ = model.extract_finetune({"video": video, "audio": None})
        layer1, _ = model.extract_features({"video": video, "audio": torch.randn(1, 104, 20)}, output_layer=1)
    assert features.shape == (1, 20, 64) and layer1.shape == (1, 20, 64)
    assert torch.isfinite(features).all()

    # Resume from the last checkpoint (checkpoint.restore_file) and continue to 8 updates.
    result = _hydra_train(data, save_dir, "optimization.max_update=8", "dataset.max_tokens=120")
    state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))
    assert state["optimizer_history"][-1]["num_updates"] == 8
