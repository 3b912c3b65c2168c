"""Localisation of partial fakes (the demo's report on its ``partial`` clips)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sf_fairseq.eval import partial_localisation
from sf_fairseq.eval.partial_localisation import WindowClip, localise, summarise, top_iou
from sf_fairseq.eval.pipeline import ScoreOptions


def test_top_iou_takes_the_most_confident_proposal() -> None:
    rows = [[0.2, 1.0, 2.0], [0.9, 1.5, 2.5]]  # not in confidence order
    assert top_iou(rows, (1.0, 2.0)) == pytest.approx(0.5 / 1.5)
    assert top_iou([], (1.0, 2.0)) == 0.0


def test_summarise_measures_each_clip_against_its_own_window() -> None:
    clips = [WindowClip("a", "", "", (1.0, 2.0)), WindowClip("b", "", "", (1.0, 2.0))]
    proposals = {"a": [[0.9, 1.0, 2.0], [0.5, 0.0, 4.0]],  # top proposal exact
                 "b": [[0.8, 3.0, 3.5], [0.4, 0.9, 2.1]]}  # top proposal misses; the second hits (IoU 0.83)
    summary = summarise(proposals, clips)
    assert summary.n_clips == 2
    assert summary.mean_top_iou == pytest.approx(0.5)
    assert summary.top_iou_above_half == pytest.approx(0.5)
    # Ranked by confidence: a1 TP, b1 FP, a2 FP, b2 TP. The SDK's AP leaves out the step from
    # recall 0 to the first proposal's recall, so it is 0.5 x 0.5 here (see benchmarks.localisation).
    assert summary.ap[0.5] == pytest.approx(0.25)
    assert summary.ap[0.75] == pytest.approx(0.25)
    assert summary.ar[1] == pytest.approx(0.5)  # a recalled at every IoU threshold, b at none
    assert set(summary.as_dict()) == {"n_clips", "ap", "ar", "mean_top_iou", "top_iou_above_half"}


class _StandInScorer:
    """Scores clips whose lips agree with the audio everywhere but in their window."""

    settings = None
    options = ScoreOptions(max_offset=2)

    def __init__(self, windows: dict[str, tuple[int, int]], n_frames: int = 100) -> None:
        self.windows, self.n_frames = windows, n_frames

    def score_clips(self, clips):
        results = []
        for clip in clips:
            sims = torch.full((self.n_frames, 5), 0.1)
            sims[:, 3] = 0.9  # best offset +1
            a, b = self.windows[clip]
            sims[a:b, 3] = -0.2
            results.append(SimpleNamespace(sims=sims, best_offset=1))
        return results


def test_localise_finds_the_window_where_agreement_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    # load_clip is replaced by the clip's id, so the stand-in scorer knows which window it scores.
    monkeypatch.setattr(partial_localisation, "load_clip", lambda video, audio, settings, max_seconds: video)
    windows = {"v0": (25, 50), "v1": (60, 90), "v2": (10, 30)}
    clips = [WindowClip(f"c{i}", f"v{i}", "", (a / 25, b / 25)) for i, (a, b) in enumerate(windows.values())]
    summary, proposals = localise(_StandInScorer(windows), clips, batch_size=2)
    assert set(proposals) == {"c0", "c1", "c2"}
    for clip in clips:
        best = max(proposals[clip.id], key=lambda row: row[0])
        assert best[1:] == pytest.approx(list(clip.window), abs=0.05)
    assert summary.mean_top_iou > 0.9 and summary.top_iou_above_half == 1.0
    assert np.isclose(summary.ar[1], 1.0)
