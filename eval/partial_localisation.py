"""Where a partial fake lies: the demo's localisation of its ``partial`` clips.

A ``partial`` clip of the synthetic corpus is real except inside one window (0.8-1.6 s) where the
mouth says another sentence; the corpus records the window. A single score per clip cannot say
where, so the demo reports localisation instead of an AUC for them: each clip is scored, its
per-frame agreement at the best offset becomes segment proposals (the benchmark rule of
:func:`.benchmarks.proposals.proposals_from_sims`), and the proposals are measured against the
window with the AV-Deepfake1M SDK's AP@IoU and AR@n (:mod:`.benchmarks.localisation`), plus two
plain figures: the IoU of each clip's most confident proposal with its window, and the share of
clips where that IoU exceeds 0.5.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .benchmarks.localisation import ap_1d, ar_1d, iou_1d
from .benchmarks.proposals import ProposalSettings, proposals_from_sims
from .encode import load_clip
from .pipeline import Scorer

logger = logging.getLogger(__name__)

AP_THRESHOLDS = (0.5, 0.75)
AR_PROPOSALS = (1, 5, 10)


@dataclass(frozen=True)
class WindowClip:
    """A clip with one known fake window (seconds from the clip's start)."""

    id: str
    video: str
    audio: str
    window: tuple[float, float]


@dataclass(frozen=True)
class LocalisationSummary:
    """Localisation of a set of :class:`WindowClip` (AP/AR keys are IoU thresholds / proposal counts)."""

    n_clips: int
    ap: dict[float, float]
    ar: dict[int, float]
    mean_top_iou: float
    top_iou_above_half: float

    def as_dict(self) -> dict:
        return asdict(self)


def top_iou(rows: Sequence[Sequence[float]], window: tuple[float, float]) -> float:
    """IoU of the most confident proposal (``[confidence, start, end]`` rows) with ``window``; 0
    without proposals."""
    if not rows:
        return 0.0
    best = max(rows, key=lambda row: row[0])
    return float(iou_1d(np.array([best[1:]], np.float32), np.array([window], np.float32))[0, 0])


def summarise(proposals: dict[str, list[list[float]]], clips: Sequence[WindowClip]) -> LocalisationSummary:
    """The metrics of ``proposals`` (rows per clip id, best first) against the clips' windows."""
    labels = [(clip.id, [list(clip.window)]) for clip in clips]
    ious = np.array([top_iou(proposals[clip.id], clip.window) for clip in clips])
    return LocalisationSummary(
        n_clips=len(clips),
        ap=ap_1d(proposals, labels, 1.0, AP_THRESHOLDS),
        ar=ar_1d(proposals, labels, 1.0, AR_PROPOSALS),
        mean_top_iou=float(ious.mean()) if len(ious) else float("nan"),
        top_iou_above_half=float((ious > 0.5).mean()) if len(ious) else float("nan"),
    )


def localise(scorer: Scorer, clips: Sequence[WindowClip], settings: ProposalSettings = ProposalSettings(),
             batch_size: int = 8) -> tuple[LocalisationSummary, dict[str, list[list[float]]]]:
    """Score ``clips`` with ``scorer`` and measure their proposals against the known windows.

    Returns the summary and the proposals (``[confidence, start, end]`` rows per clip id).

    Raises:
        OSError, ValueError: a clip cannot be read (see :func:`.encode.load_clip`).
    """
    proposals: dict[str, list[list[float]]] = {}
    for first in range(0, len(clips), batch_size):
        batch = clips[first : first + batch_size]
        inputs = [load_clip(clip.video, clip.audio, scorer.settings, scorer.options.max_seconds) for clip in batch]
        for clip, result in zip(batch, scorer.score_clips(inputs)):
            proposals[clip.id] = [p.as_row() for p in proposals_from_sims(result.sims, result.best_offset, settings)]
    summary = summarise(proposals, clips)
    logger.info("partial fakes: %d clips, AP@0.5 %.3f, top-proposal IoU %.3f", summary.n_clips,
                summary.ap[0.5], summary.mean_top_iou)
    return summary, proposals
