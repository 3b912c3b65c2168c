"""The demo report's AUC columns: bootstrap intervals, and fakes against unshifted real clips only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sf_fairseq.eval.demo import _auc_against_unshifted_real, _auc_intervals, _scored_records
from sf_fairseq.eval.metrics import roc_auc


def test_auc_against_unshifted_real_leaves_out_offset_small_and_failures(tmp_path: Path) -> None:
    rows = [("r1", "real", 0.9, "ok"), ("r2", "real", 0.8, "ok"), ("o1", "offset_small", 0.1, "ok"),
            ("d1", "dubbed", None, "failed"), ("d1", "dubbed", 0.85, "ok"),  # retried: counts once
            ("d2", "dubbed", 0.2, "ok"), ("d3", "dubbed", None, "failed"), ("f1", "frozen_mouth", 0.95, "ok")]
    path = tmp_path / "scores.jsonl"
    with open(path, "w") as f:
        for item_id, category, score, status in rows:
            f.write(json.dumps({"id": item_id, "category": category, "score": score, "status": status}) + "\n")
    auc = _auc_against_unshifted_real(_scored_records(path))
    assert set(auc) == {"dubbed", "frozen_mouth"}
    assert auc["dubbed"] == pytest.approx(0.75)  # 3 of 4 real/dubbed pairs ordered right
    assert auc["frozen_mouth"] == pytest.approx(0.0)


def test_auc_intervals_bracket_each_categorys_auc_against_all_real_labelled(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(f"r{i}", "real", 1, s) for i, s in enumerate(rng.normal(0.7, 0.1, 30))]
    rows += [(f"o{i}", "offset_small", 1, s) for i, s in enumerate(rng.normal(0.65, 0.1, 30))]
    rows += [(f"d{i}", "dubbed", 0, s) for i, s in enumerate(rng.normal(0.5, 0.1, 30))]
    rows += [(f"f{i}", "frozen_mouth", 0, s) for i, s in enumerate(rng.normal(0.68, 0.1, 30))]
    path = tmp_path / "scores.jsonl"
    with open(path, "w") as f:
        for item_id, category, label, score in rows:
            f.write(json.dumps({"id": item_id, "category": category, "label": label, "score": float(score),
                                "status": "ok"}) + "\n")
    intervals = _auc_intervals(_scored_records(path), n_boot=300)
    assert set(intervals) == {"all", "dubbed", "frozen_mouth"}  # real-labelled clips are the reference
    real = np.array([s for _, c, label, s in rows if label == 1])
    for category, (low, high) in intervals.items():
        fake = np.array([s for _, c, label, s in rows if label == 0 and category in ("all", c)])
        auc = roc_auc(np.r_[np.ones(real.size), np.zeros(fake.size)], np.r_[real, fake])
        assert low < auc < high and high - low < 0.3
    assert intervals["dubbed"][0] > intervals["frozen_mouth"][1]  # well separated vs barely


def test_roi_of_takes_the_first_face_track_of_the_prepare_record(tmp_path: Path) -> None:
    """A face the tracker lost and found again gives two tracks (``__track0``/``__track1``): the
    demo scores the first, instead of looking for a single-track file that does not exist."""
    from sf_fairseq.eval.demo import _roi_of

    status = tmp_path / "status" / "real"
    status.mkdir(parents=True)
    tracks = [{"track": 1, "id": "real/s00021__track1", "video": "video/real/s00021__track1.mp4"},
              {"track": 0, "id": "real/s00021__track0", "video": "video/real/s00021__track0.mp4"}]
    (status / "s00021.json").write_text(json.dumps({
        "schema_version": 1, "id": "real/s00021", "input": "x.mp4", "status": "ok", "reason": "",
        "audio": "audio/real/s00021.wav", "tracks": tracks}))
    assert _roi_of(tmp_path, "real/s00021") == ("video/real/s00021__track0.mp4", "audio/real/s00021.wav")
    # No record (not prepared yet, or failed before writing one): the single-track names.
    assert _roi_of(tmp_path, "real/s00022") == ("video/real/s00022.mp4", "audio/real/s00022.wav")
