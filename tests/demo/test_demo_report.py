"""The demo report's second AUC column: fakes against unshifted real clips only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sf_fairseq.eval.demo import _auc_against_unshifted_real


def test_auc_against_unshifted_real_leaves_out_offset_small_and_failures(tmp_path: Path) -> None:
    rows = [("real", 0.9), ("real", 0.8), ("offset_small", 0.1), ("dubbed", 0.85), ("dubbed", 0.2),
            ("frozen_mouth", 0.95)]
    path = tmp_path / "scores.jsonl"
    with open(path, "w") as f:
        for category, score in rows:
            f.write(json.dumps({"category": category, "score": score, "status": "ok"}) + "\n")
        f.write(json.dumps({"category": "dubbed", "score": None, "status": "error"}) + "\n")
    auc = _auc_against_unshifted_real(path)
    assert set(auc) == {"dubbed", "frozen_mouth"}
    assert auc["dubbed"] == pytest.approx(0.75)  # 3 of 4 real/dubbed pairs ordered right
    assert auc["frozen_mouth"] == pytest.approx(0.0)
