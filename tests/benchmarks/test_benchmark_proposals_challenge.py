"""Segment proposals from per-frame agreement, and the SDK's prediction file formats."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from sf_fairseq.eval import metrics
from sf_fairseq.eval.benchmarks import challenge
from sf_fairseq.eval.benchmarks import localisation as loc
from sf_fairseq.eval.benchmarks.proposals import (
    Proposal, ProposalSettings, frame_agreement, proposals_from_sims, propose_segments,
)


def _agreement(n: int = 150, fake: tuple[int, int] = (50, 75), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.8 + rng.normal(0, 0.02, n)
    x[fake[0]:fake[1]] = 0.2 + rng.normal(0, 0.02, fake[1] - fake[0])
    return x


def test_frame_agreement_takes_the_best_offset_column():
    sims = torch.arange(12, dtype=torch.float32).reshape(4, 3)  # K = 1
    assert frame_agreement(sims, 1).tolist() == [2.0, 5.0, 8.0, 11.0]
    assert frame_agreement(sims.numpy(), -1).tolist() == [0.0, 3.0, 6.0, 9.0]
    with pytest.raises(ValueError, match="outside"):
        frame_agreement(sims, 2)


def test_proposals_from_scorer_rows_use_the_best_offset_column():
    rows = np.full((150, 31), -0.5)
    rows[:, 15 + 3] = _agreement()  # the clip's best offset is +3 frames
    assert proposals_from_sims(torch.from_numpy(rows), 3) == propose_segments(_agreement())


def test_the_best_proposal_covers_the_drop():
    props = propose_segments(_agreement())
    best = props[0]
    iou = loc.iou_1d(np.array([[best.start, best.end]], np.float32), np.array([[2.0, 3.0]], np.float32))[0, 0]
    assert iou > 0.85
    assert best.confidence == pytest.approx(0.4, abs=0.02)  # mean (1 - 0.2) / 2
    # Sorted by confidence, the whole clip is one of them, all inside the clip.
    assert [p.confidence for p in props] == sorted((p.confidence for p in props), reverse=True)
    assert any(p.start == 0 and p.end == 6.0 for p in props)
    assert all(0 <= p.start < p.end <= 6.0 for p in props)


def test_a_flat_clip_gives_only_the_whole_clip():
    props = propose_segments(np.full(100, 0.7) + np.random.default_rng(1).normal(0, 1e-4, 100))
    assert props == [Proposal(0.0, 4.0, pytest.approx(0.15, abs=1e-3))]


def test_frames_outside_the_speech_mask_are_never_proposed():
    speech = np.ones(150, dtype=bool)
    speech[45:80] = False  # the drop is silence
    props = propose_segments(_agreement(), speech=speech)
    assert all(p.end <= 45 / 25 or p.start >= 80 / 25 or (p.start == 0 and p.end == 6.0) for p in props)
    with pytest.raises(ValueError, match="speech mask"):
        propose_segments(_agreement(), speech=np.ones(10, dtype=bool))


def test_settings_cap_and_minimum_length():
    x = np.full(150, 0.8)
    x[50:75] = 0.2
    x[100:102] = 0.1  # a 2-frame dip
    unsmoothed = ProposalSettings(smooth_frames=1, min_frames=3)
    assert (4.0, 4.08) not in {(p.start, p.end) for p in propose_segments(x, unsmoothed)}
    unsmoothed_short = ProposalSettings(smooth_frames=1, min_frames=2)
    assert (4.0, 4.08) in {(p.start, p.end) for p in propose_segments(x, unsmoothed_short)}
    # The running median removes it whatever the minimum length.
    assert (4.0, 4.08) not in {(p.start, p.end) for p in propose_segments(x, ProposalSettings(min_frames=1))}
    assert len(propose_segments(x, ProposalSettings(max_proposals=1))) == 1
    assert propose_segments(np.zeros(0)) == []


def test_classification_file_is_what_the_sdk_reads_with_fake_pointing_up():
    ours = {"a/real.mp4": 0.9, "b/fake.mp4": 0.1, "c/fake.mp4": 0.5, "d/real.mp4": 0.4}
    labels = np.array([1, 0, 0, 1])
    text = challenge.classification_text(ours)
    table = pd.read_csv(io.StringIO(text), header=None, sep=";")  # as avdeepfake1m.evaluation.auc
    assert table[0].tolist() == list(ours)
    truth = [0, 1, 1, 0]  # the SDK: fake iff fake_segments is non-empty
    sdk_auc = roc_auc_score(truth, table[1].to_numpy())
    assert sdk_auc == pytest.approx(metrics.roc_auc(labels, np.array(list(ours.values()))))
    assert ((table[1] >= 0) & (table[1] <= 1)).all()  # in [0, 1]: torchmetrics applies no sigmoid
    with pytest.raises(ValueError, match="';'"):
        challenge.classification_text({"a;b.mp4": 0.3})


def test_localisation_json_sorted_and_never_empty(tmp_path):
    path = tmp_path / "pred.json"
    challenge.write_localisation(path, {"x.mp4": [Proposal(0, 1, 0.2), Proposal(1, 2, 0.7)]})
    assert json.loads(path.read_text()) == {"x.mp4": [[0.7, 1.0, 2.0], [0.2, 0.0, 1.0]]}
    with pytest.raises(ValueError, match="empty list"):
        challenge.write_localisation(path, {"x.mp4": []})
    subset = tmp_path / "meta.json"
    challenge.write_metadata_subset(subset, [("x.mp4", [(1.0, 2.0)])], "fake_segments")
    assert loc.ap_1d(loc.load_proposals(path), loc.load_labels(subset), iou_thresholds=[0.5]) == {0.5: 0.0}
