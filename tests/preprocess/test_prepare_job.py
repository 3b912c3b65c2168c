"""sf-prepare's engine called as a function: PrepareJob -> PrepareSummary, the command's exit
statuses, and PrepareError where the command exits with 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sf_fairseq.preprocess import prepare
from sf_fairseq.preprocess.prepare_engine import PrepareError, PrepareJob, PrepareOptions, run


def _inputs(tmp_path: Path) -> Path:
    root = tmp_path / "inputs"
    root.mkdir()
    (root / "corrupt.mp4").write_bytes(os.urandom(3000))
    (root / "empty.mkv").write_bytes(b"")
    return root


@pytest.mark.slow
def test_run_gives_a_typed_summary_and_the_same_outputs_as_the_command(tmp_path):
    root = _inputs(tmp_path)
    summary = run(PrepareJob(root, tmp_path / "typed", split="valid"))
    assert summary.counts == {"unreadable": 2} and summary.n_inputs == 2 and summary.n_failed == 2
    assert summary.exit_status == 1 and summary.n_rows == 0
    assert summary.manifest == (tmp_path / "typed" / "valid.tsv").resolve() and summary.manifest.is_file()
    assert summary.log == (tmp_path / "typed" / "valid.log.jsonl").resolve()
    assert prepare.main([str(root), str(tmp_path / "cli"), "--split", "valid"]) == summary.exit_status
    for name in ("prepare_settings.json", "status/corrupt.json", "status/empty.json"):
        typed = json.loads((tmp_path / "typed" / name).read_text())
        cli = json.loads((tmp_path / "cli" / name).read_text())
        assert {k: v for k, v in typed.items() if k != "seconds"} == {k: v for k, v in cli.items() if k != "seconds"}
    # A rerun resumes every input; manifest_only processes nothing.
    again = run(PrepareJob(root, tmp_path / "typed", split="valid"))
    assert again.counts == {"unreadable": 2}
    only = run(PrepareJob(root, tmp_path / "typed", split="valid", manifest_only=True))
    assert (only.log, only.exit_status, only.n_rows) == (None, 0, 0)


def test_what_the_command_refuses_is_a_prepare_error(tmp_path):
    root = _inputs(tmp_path)
    (root / "empty.mkv").unlink()
    with pytest.raises(PrepareError, match="--detect-every, --workers and --min-frames must be >= 1"):
        run(PrepareJob(root, tmp_path / "out", workers=0))
    with pytest.raises(PrepareError, match="no such directory or list file"):
        run(PrepareJob(tmp_path / "nothing", tmp_path / "out"))
    run(PrepareJob(root, tmp_path / "out"))
    with pytest.raises(PrepareError, match="min_frames"):
        run(PrepareJob(root, tmp_path / "out", options=PrepareOptions(min_frames=5)))
    rerun = PrepareJob(root, tmp_path / "out", options=PrepareOptions(min_frames=5), overwrite=True)
    assert run(rerun).counts == {"unreadable": 1}
