"""Safe checkpoint loading: fairseq's own path works after import; foreign globals are refused."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sf_fairseq
from sf_fairseq.checkpoint import TRUST_ENV_VAR, UntrustedCheckpointError, load_state


class _RunsShellCommand:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "malicious.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _RunsShellCommand(marker)}, path)
    return path, marker


def test_import_registers_task_model_and_criteria() -> None:
    script = (
        "import sf_fairseq\n"
        "from fairseq.tasks import TASK_REGISTRY\n"
        "from fairseq.models import MODEL_REGISTRY\n"
        "from fairseq.criterions import CRITERION_REGISTRY\n"
        "assert 'av_hubert_pretraining' in TASK_REGISTRY\n"
        "assert 'av_hubert' in MODEL_REGISTRY\n"
        "assert 'av_hubert' in CRITERION_REGISTRY and 'av_hubert_alignment' in CRITERION_REGISTRY\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_fixture_loads_through_fairseq_checkpoint_utils(shared_dir: Path, monkeypatch) -> None:
    from fairseq import checkpoint_utils

    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    path = shared_dir / "fixtures/avhubert_tiny/checkpoint.pt"
    state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert state["task_state"]["dictionaries"][0].symbols[4:] == [str(i) for i in range(10)]
    # Unknown saved keys (input_modality) are dropped so fairseq's dataclass merge accepts them.
    assert "input_modality" not in state["cfg"].task
    assert "input_modality" not in state["cfg"].model


def test_plain_torch_load_also_accepts_fixture_after_import(shared_dir: Path) -> None:
    state = torch.load(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt", map_location="cpu")
    assert "model" in state


def test_finetuned_fixture_needs_only_allow_listed_globals(shared_dir: Path) -> None:
    state = load_state(shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt")
    tokenizer = state["task_state"]["s2s_tokenizer"]
    assert tokenizer.sp.get_piece_size() == 30


def test_malicious_checkpoint_is_refused_and_nothing_runs(malicious_checkpoint, monkeypatch) -> None:
    path, marker = malicious_checkpoint
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        load_state(path)
    message = str(excinfo.value)
    assert "posix.system" in message or "os.system" in message
    assert "--trust-checkpoint" in message and TRUST_ENV_VAR in message
    assert not marker.exists()


def test_malicious_checkpoint_refused_through_fairseq(malicious_checkpoint, monkeypatch) -> None:
    from fairseq import checkpoint_utils

    path, marker = malicious_checkpoint
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()


def test_trust_flag_loads_a_trusted_file(malicious_checkpoint) -> None:
    path, marker = malicious_checkpoint
    state = load_state(path, trust_checkpoint=True)
    assert torch.equal(state["model"]["w"], torch.zeros(2))
    assert marker.exists()  # the user opted in: the pickle ran


def test_environment_variable_trusts_only_listed_files(shared_dir, tmp_path, monkeypatch) -> None:
    from fairseq import checkpoint_utils

    # A real fairseq checkpoint with a payload added, so fairseq's post-processing applies.
    state = load_state(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt")
    marker = tmp_path / "code-ran"
    state["extra_state"]["payload"] = _RunsShellCommand(marker)
    path = tmp_path / "fairseq_malicious.pt"
    torch.save(state, path)
    monkeypatch.setenv(TRUST_ENV_VAR, str(tmp_path / "other.pt"))
    with pytest.raises(UntrustedCheckpointError):
        load_state(path)
    assert not marker.exists()
    monkeypatch.setenv(TRUST_ENV_VAR, os.pathsep.join([str(tmp_path / "other.pt"), str(path)]))
    loaded = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert marker.exists()
    assert loaded["cfg"].model._name == "av_hubert"


def test_missing_checkpoint_names_the_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_state(tmp_path / "nowhere.pt")


def test_allow_list_covers_omegaconf_and_numpy_objects(tmp_path) -> None:
    """fairseq broadcasts loaded states (DictConfig cfg) between ranks with torch.load."""
    import argparse

    import numpy as np
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"a": [1, 2], "b": None, "c": 0.5}, "ns": argparse.Namespace(x=1)},
                           flags={"allow_objects": True})
    path = tmp_path / "objects.pt"
    torch.save({"cfg": cfg, "scalar": np.float64(2.5), "array": np.arange(3)}, path)
    state = load_state(path)
    assert state["cfg"].model.a == [1, 2] and state["scalar"] == 2.5
    assert list(state["array"]) == [0, 1, 2]
    assert sf_fairseq.checkpoint.disallowed_globals(path) == []


def test_import_leaves_the_root_logger_alone() -> None:
    """fairseq's import-time logging.basicConfig(DEBUG) must not leak into applications."""
    script = (
        "import logging\n"
        "import sf_fairseq\n"
        "root = logging.getLogger()\n"
        "assert root.handlers == [], root.handlers\n"
        "assert root.level == logging.WARNING, root.level\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def _save_legacy(obj, path: Path) -> None:
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def _save_raw_pickle(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


@pytest.mark.parametrize("save", [_save_legacy, _save_raw_pickle], ids=["legacy", "raw-pickle"])
def test_non_zip_refusal_names_the_global(save, tmp_path, monkeypatch) -> None:
    """The CLIs print the message only: it must name the global for every format, not point to a
    chained cause."""
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    marker = tmp_path / "code-ran"
    path = tmp_path / "malicious.pt"
    save({"model": {"w": torch.zeros(2)}, "payload": _RunsShellCommand(marker)}, path)
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        load_state(path)
    message = str(excinfo.value)
    assert "posix.system" in message or "os.system" in message
    assert "cause below" not in message and "--trust-checkpoint" in message
    assert not marker.exists()
    assert set(sf_fairseq.checkpoint.disallowed_globals(path)) & {"posix.system", "os.system"}


def test_global_found_through_memoised_names(tmp_path) -> None:
    """Protocol 4 pushes module and name as (memoised) strings before STACK_GLOBAL; a second use
    of the same module fetches it from the memo."""
    path = tmp_path / "two.pkl"
    _save_raw_pickle([_RunsShellCommand(tmp_path / "a"), os.path.join], path)
    names = {f"{f.__module__}.{f.__name__}" for f in (os.system, os.path.join)}  # posix.system...
    assert names <= set(sf_fairseq.checkpoint.disallowed_globals(path))


def test_raw_pickle_without_globals_refused_with_torchs_reason(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(TRUST_ENV_VAR, raising=False)
    path = tmp_path / "plain.pkl"
    _save_raw_pickle({"a": [1, 2.0, "x"]}, path)
    with pytest.raises(UntrustedCheckpointError, match=r"cannot read it \(.+\)") as excinfo:
        load_state(path)
    assert "cause below" not in str(excinfo.value) and "Weights only load failed" not in str(excinfo.value)


def test_legacy_format_checkpoint_with_allowed_objects_loads(tmp_path) -> None:
    import argparse

    path = tmp_path / "legacy_ok.pt"
    _save_legacy({"model": {"w": torch.ones(3)}, "args": argparse.Namespace(lr=0.1)}, path)
    state = load_state(path)
    assert torch.equal(state["model"]["w"], torch.ones(3)) and state["args"].lr == 0.1
    assert sf_fairseq.checkpoint.disallowed_globals(path) == []
