"""Fake-segment proposals from the per-frame lip-speech agreement of one clip.

The scorer keeps ``s_i(k)``, the cosine of the lips at frame ``i`` with the speech at frame
``i + k`` (``ClipResult.sims``, shape ``(T, 2K + 1)``, 25 frames a second; see
:mod:`sf_fairseq.eval.score`). A manipulated stretch of a mostly real clip shows as frames whose
agreement at the clip's best offset drops. The method, with :class:`ProposalSettings`:

1. **agreement** ``x_i = s_i(k*)`` at the clip's best offset ``k*`` (:func:`frame_agreement`);
2. **disagreement** ``d_i = (1 - x_i) / 2`` in ``[0, 1]``, smoothed by a centred running
   median of ``smooth_frames`` frames (edges repeated at the clip's ends), which removes dips
   shorter than half the window but keeps the edges of a longer one where they are;
3. **relative level** ``z_i = (d_i - median(d)) / max(1.4826 * MAD(d), min_scale)``, the
   median and MAD over the speech frames (all frames without a speech mask), so a clip is judged
   against its own typical agreement, not a global threshold;
4. for each threshold ``t`` of ``thresholds``: the speech frames with ``z_i > t`` form runs;
   runs separated by at most ``merge_gap`` frames are merged; runs shorter than ``min_frames``
   are dropped. Each run ``[a, b)`` is a proposal ``[a / fps, b / fps]`` seconds with
   **confidence = its mean unsmoothed disagreement** ``mean_{a <= i < b} (1 - x_i) / 2``;
5. the whole clip is always one more proposal, with the clip's mean disagreement as confidence
   (a fully fake clip is one segment, and the official SDK cannot read an empty list);
6. identical segments from several thresholds are kept once; proposals are sorted by descending
   confidence (the order the SDK's AR reads them in) and cut at ``max_proposals``.

Several thresholds give nested candidates of different lengths, which is what AR@n rewards.
Frames outside the optional speech mask (silence: no lip-speech evidence either way) are never
part of a run, so a mask splits runs at pauses longer than ``merge_gap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import median_filter

from sf_fairseq.data.rates import FPS

from ..drift import float64_values

if TYPE_CHECKING:
    import torch

_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution -> its standard deviation


@dataclass(frozen=True)
class ProposalSettings:
    """Settings of :func:`propose_segments` (see the module docstring).

    Attributes:
        smooth_frames: running-median length of the disagreement (frames; 5 = 0.2 s).
        thresholds: relative levels ``z`` above which a frame is suspect, one proposal set each.
        min_scale: floor of the MAD-based scale (disagreement units), so that a clip of nearly
            constant agreement does not turn noise into proposals.
        merge_gap: suspect runs at most this many frames apart are merged.
        min_frames: shortest proposal (frames).
        max_proposals: most proposals per clip (the SDK's AR reads up to 50).
        fps: frame rate of the similarity rows.
    """

    smooth_frames: int = 5
    thresholds: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
    min_scale: float = 0.01
    merge_gap: int = 2
    min_frames: int = 3
    max_proposals: int = 100
    fps: float = float(FPS)


@dataclass(frozen=True)
class Proposal:
    """A candidate fake segment: ``[start, end]`` seconds with a confidence in ``[0, 1]``."""

    start: float
    end: float
    confidence: float

    def as_row(self) -> list[float]:
        """``[confidence, start, end]``, a row of the SDK's prediction JSON."""
        return [round(self.confidence, 6), round(self.start, 4), round(self.end, 4)]


def frame_agreement(sims: torch.Tensor | np.ndarray, best_offset: int) -> np.ndarray:
    """``s_i(k*)``: column ``best_offset + K`` of ``sims`` ``(T, 2K + 1)`` -> ``(T,)`` float64."""
    sims = float64_values(sims)
    if sims.ndim != 2 or sims.shape[1] % 2 != 1:
        raise ValueError(f"sims must be (T, 2K + 1), got shape {sims.shape}")
    k = (sims.shape[1] - 1) // 2
    if not -k <= best_offset <= k:
        raise ValueError(f"best offset {best_offset} outside [-{k}, {k}]")
    return sims[:, best_offset + k]


def _running_median(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or x.size == 0:
        return x.copy()
    return median_filter(x, size=width, mode="nearest")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[a, b)`` runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _merge(runs: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def propose_segments(
    agreement: np.ndarray, settings: ProposalSettings = ProposalSettings(), speech: np.ndarray | None = None
) -> list[Proposal]:
    """Proposals of one clip from its per-frame agreement ``(T,)`` (and optional speech mask
    ``(T,)``, True = speech), best first. Empty only for a clip of no frame."""
    x = np.asarray(agreement, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"agreement must be (T,), got shape {x.shape}")
    t = x.size
    if t == 0:
        return []
    speech = np.ones(t, dtype=bool) if speech is None else np.asarray(speech, dtype=bool)
    if speech.shape != (t,):
        raise ValueError(f"speech mask of shape {speech.shape} for {t} frames")
    raw = (1.0 - x) / 2.0
    smooth = _running_median(raw, settings.smooth_frames)
    reference = smooth[speech] if speech.any() else smooth
    median = float(np.median(reference))
    scale = max(_MAD_TO_SIGMA * float(np.median(np.abs(reference - median))), settings.min_scale)
    z = (smooth - median) / scale

    best: dict[tuple[int, int], float] = {(0, t): float(raw[speech].mean() if speech.any() else raw.mean())}
    for threshold in settings.thresholds:
        for a, b in _merge(_runs((z > threshold) & speech), settings.merge_gap):
            if b - a >= settings.min_frames:
                best[(a, b)] = float(raw[a:b].mean())
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[: settings.max_proposals]
    return [Proposal(a / settings.fps, b / settings.fps, conf) for (a, b), conf in ranked]


def proposals_from_sims(
    sims: torch.Tensor | np.ndarray,
    best_offset: int,
    settings: ProposalSettings = ProposalSettings(),
    speech: np.ndarray | None = None,
) -> list[Proposal]:
    """:func:`propose_segments` of a scorer's ``ClipResult.sims`` ``(T, 2K + 1)`` at its best offset."""
    return propose_segments(frame_agreement(sims, best_offset), settings, speech)
