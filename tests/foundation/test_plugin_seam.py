"""The plugin seam (sf_fairseq.plugin): ``import sf_fairseq`` is light, and fairseq finds the
task, models and criteria however the two are imported. Each case runs in a fresh interpreter,
since what is already imported is the point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REGISTERED = (
    "from fairseq.tasks import TASK_REGISTRY\n"
    "from fairseq.models import MODEL_REGISTRY\n"
    "from fairseq.criterions import CRITERION_REGISTRY\n"
    "assert 'av_hubert_pretraining' in TASK_REGISTRY\n"
    "assert {'av_hubert', 'av_hubert_seq2seq'} <= set(MODEL_REGISTRY)\n"
    "assert {'av_hubert', 'av_hubert_alignment'} <= set(CRITERION_REGISTRY)\n"
)


def _run(script: str) -> str:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _load(checkpoint: Path) -> str:
    return (
        "from fairseq import checkpoint_utils\n"
        f"models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([{str(checkpoint)!r}])\n"
        "assert type(models[0]).__name__ == 'AVHubertModel', type(models[0])\n"
        "assert type(task).__name__ == 'AVHubertPretrainingTask', type(task)\n"
    )


def test_import_sf_fairseq_imports_neither_torch_nor_fairseq() -> None:
    _run(
        "import sys, logging\n"
        "level = logging.getLogger().level\n"
        "import sf_fairseq\n"
        "assert 'torch' not in sys.modules and 'fairseq' not in sys.modules, sorted(sys.modules)\n"
        "assert logging.getLogger().level == level\n"
    )


@pytest.mark.parametrize(
    "module",
    ["sf_fairseq.eval.metrics_cli", "sf_fairseq.eval.report", "sf_fairseq.eval.results",
     "sf_fairseq.eval.evidence_index", "sf_fairseq.preprocess.prepare", "sf_fairseq.resume",
     "sf_fairseq.paths"],
)
def test_numpy_only_stages_do_not_import_torch(module: str) -> None:
    _run(f"import sys\nimport {module}\nassert 'torch' not in sys.modules, {module!r}\n"
         "assert 'fairseq' not in sys.modules\n")


def test_fairseq_imported_after_sf_fairseq_finds_the_plugin(shared_dir: Path) -> None:
    checkpoint = shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"
    _run(
        "import logging\n"
        "level = logging.getLogger().level\n"
        "import sf_fairseq\n"
        "import fairseq\n" + REGISTERED + _load(checkpoint)
        # fairseq sets the root logger to DEBUG on import; the hook keeps the application's set-up
        + "assert logging.getLogger().level == level, logging.getLogger().level\n"
    )


def test_fairseq_imported_before_sf_fairseq_finds_the_plugin(shared_dir: Path) -> None:
    checkpoint = shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"
    _run("import fairseq\nimport sf_fairseq\n" + REGISTERED + _load(checkpoint))


def test_fairseq_first_imported_by_a_plugin_module_completes_on_load(shared_dir: Path) -> None:
    # The half-imported model module defers the other plugin modules; the checkpoint loader
    # completes the registration before it needs the task.
    checkpoint = shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"
    _run(
        "from sf_fairseq.models.av_hubert_seq2seq import AVHubertSeq2Seq\n"
        "from sf_fairseq import plugin\n" + _load(checkpoint) + "assert plugin.is_registered()\n" + REGISTERED
    )


def test_lazy_public_names_register_the_plugin() -> None:
    _run("import sf_fairseq\nassert sf_fairseq.AVHubertModel.__name__ == 'AVHubertModel'\n" + REGISTERED)


def test_user_dir_registers() -> None:
    _run("import sf_fairseq.user_dir\n" + REGISTERED)
