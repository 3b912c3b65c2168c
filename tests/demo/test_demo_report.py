"""The demo report's second AUC column: fakes against unshifted real clips only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sf_fairseq.eval.demo import _auc_against_unshifted_real


def test_auc_against_unshifted_real_leaves_out_offset_small_and_failures(tmp_path: Path) -> None:
    rows = [("r1", "real", 0.9, "ok"), ("r2", "real", 0.8, "ok"), ("o1", "offset_small", 0.1, "ok"),
            ("d1", "dubbed", None, "failed"), ("d1", "dubbed", 0.85, "ok"),  # retried: counts once
            ("d2", "dubbed", 0.2, "ok"), ("d3", "dubbed", None, "failed"), ("f1", "frozen_mouth", 0.95, "ok")]
    path = tmp_path / "scores.jsonl"
    with open(path, "w") as f:
        for item_id, category, score, status in rows:
            f.write(json.dumps({"id": item_id, "category": category, "score": score, "status": status}) + "\n")
    auc = _auc_against_unshifted_real(path)
    assert set(auc) == {"dubbed", "frozen_mouth"}
    assert auc["dubbed"] == pytest.approx(0.75)  # 3 of 4 real/dubbed pairs ordered right
    assert auc["frozen_mouth"] == pytest.approx(0.0)
