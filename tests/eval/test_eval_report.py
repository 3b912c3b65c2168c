from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sf_fairseq.eval import metrics as m
from sf_fairseq.eval.report import write_report
from sf_fairseq.eval.results import ResultWriter, latest_records


def _records(n: int = 60) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        label = int(i % 3 == 0)
        cat = "real" if label else ("A" if i % 3 == 1 else "B")
        score = rng.normal(0.6 if label else (0.2 if cat == "A" else 0.5), 0.1)
        out.append({"id": f"c{i}", "label": label, "category": cat, "status": "ok", "score": float(score)})
    out.append({"id": "m1", "label": 0, "category": "A", "status": "failed", "score": None,
                "error_type": "VideoReadError", "error": "video file not found"})
    out.append({"id": "m2", "label": 1, "category": "real", "status": "failed", "score": None,
                "error_type": "VideoReadError", "error": "cannot open"})
    out.append({"id": "u", "label": None, "category": None, "status": "ok", "score": 0.4})
    return out


def test_report_files_and_left_out_counts(tmp_path: Path) -> None:
    recs = _records()
    rep = write_report(recs, tmp_path, threshold=0.4, n_boot=100, seed=1)
    assert rep["n_records"] == 63 and rep["n_used"] == 60 and rep["n_left_out"] == 3
    assert rep["left_out"] == {"failed: VideoReadError": 2, "no label": 1}
    used = [r for r in recs[:60]]
    labels = np.array([r["label"] for r in used])
    scores = np.array([r["score"] for r in used])
    met = rep["metrics"]
    assert met["auc"] == pytest.approx(m.roc_auc(labels, scores))
    assert met["per_category"]["A"]["auc"] > met["per_category"]["B"]["auc"]
    assert met["per_category"]["A"]["n"] == 20
    assert met["ci95"]["auc"][0] <= met["auc"] <= met["ci95"]["auc"][1]
    assert met["at_threshold"]["threshold"] == 0.4
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(rep))
    md = (tmp_path / "report.md").read_text()
    assert "| failed: VideoReadError | 2 |" in md and "| no label | 1 |" in md and "| A | 20 |" in md
    for png in ("roc.png", "hist.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_both_classes(tmp_path: Path) -> None:
    recs = [r for r in _records() if r["label"] != 0]
    rep = write_report(recs, tmp_path, n_boot=0)
    assert rep["metrics"] is None and "0 fake" in rep["metrics_note"]
    assert "No metrics" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "roc.png").exists()


def test_result_writer_resume_and_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    with ResultWriter(path) as w:
        w.write({"id": "a", "status": "ok", "score": 1.0})
        w.write({"id": "b", "status": "failed", "score": None})
    with open(path, "a") as f:
        f.write('{"id": "c", "status": "o')  # killed mid-line
    w = ResultWriter(path)
    assert w.done == {"a"}
    w.write({"id": "b", "status": "ok", "score": 2.0})
    w.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    latest = latest_records([tmp_path])
    assert list(latest) == ["a", "b"] and latest["b"]["score"] == 2.0
