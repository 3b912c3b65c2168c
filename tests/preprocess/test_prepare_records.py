"""sf-prepare writes and reads its status records and log lines as typed, versioned
PrepareRecords (sf_fairseq.records)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sf_fairseq.preprocess.prepare_engine import PrepareJob, run
from sf_fairseq.records import PrepareRecord, read_prepare_record


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_status_files_and_log_lines_are_versioned_records(tmp_path: Path) -> None:
    root = tmp_path / "inputs"
    root.mkdir()
    (root / "corrupt.mp4").write_bytes(os.urandom(3000))
    (root / "two\nlines.mp4").write_bytes(b"")  # a name the manifest cannot hold: bad_name
    out = tmp_path / "out"
    summary = run(PrepareJob(root, out, split="valid"))
    assert summary.counts == {"unreadable": 1, "bad_name": 1}

    written = json.loads((out / "status" / "corrupt.json").read_text(encoding="utf-8"))
    assert written["schema_version"] == PrepareRecord.SCHEMA_VERSION
    record = read_prepare_record(out, "corrupt")
    assert record.status == "unreadable" and record.to_dict() == written
    lines = _log(summary.log)
    assert {line["schema_version"] for line in lines} == {PrepareRecord.SCHEMA_VERSION}
    assert sorted(PrepareRecord.from_dict(line).status for line in lines) == ["bad_name", "unreadable"]

    # A rerun resumes the finished input from its typed record.
    again = _log(run(PrepareJob(root, out, split="valid")).log)
    resumed = [PrepareRecord.from_dict(line) for line in again if line["status"] == "unreadable"]
    assert [(r.id, r.resumed) for r in resumed] == [("corrupt", True)]

    # An invalid record counts as missing: the input is processed again.
    (out / "status" / "corrupt.json").write_text(json.dumps({"id": "corrupt", "status": 3}), encoding="utf-8")
    assert read_prepare_record(out, "corrupt") is None
    third = _log(run(PrepareJob(root, out, split="valid")).log)
    assert [line.get("resumed") for line in third if line["status"] == "unreadable"] == [None]
    assert read_prepare_record(out, "corrupt").status == "unreadable"
