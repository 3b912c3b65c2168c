"""Offset drift: does the best audio-video offset stay the same along the clip?

A genuine recording keeps one audio-video offset from start to end; a re-timed or spliced edit
(audio from elsewhere pasted in, a cut in one stream only) changes it part-way. From the
per-frame similarities ``s_i(k)`` of the scorer (:mod:`.score`):

1. **Windows.** For windows of ``window_s`` seconds every ``hop_s`` seconds,
   ``S_w(k) = mean_{i in w} s_i(k)`` and the window's best offset ``k_w = argmax_k S_w(k)``.
2. **Confidence.** A window is *confident* when its peak stands out of its own curve,
   ``prominence = S_w(k_w) - median_k S_w(k) >= min_prominence``, its best offset is not at the
   edge of the search (``|k_w| < K``), and (with a speech mask) at least ``min_speech_fraction``
   of its frames are speech. Silence and still lips give flat curves, hence no confident window.
3. **Segments.** Consecutive confident windows whose offsets stay within ``max_disagreement``
   frames of the run's first window form a run; runs of at least ``min_segment_windows``
   windows are segments (offset: their median). Shorter runs (an isolated window locking
   onto a side peak of rhythmic speech) are not evidence of anything and are dropped;
   neighbouring segments within ``max_disagreement`` of each other merge.
4. **Flag.** The clip drifts when two segments differ by more than ``max_disagreement``
   frames (default 3 frames = 120 ms: larger than the one- or two-frame jitter of a clean
   clip's windows, smaller than any audible re-timing). Each change between consecutive
   segments is placed at the frame ``t`` that maximises
   ``sum_{i<t} s_i(k_a) + sum_{i>=t} s_i(k_b)`` between the two segments (a one-change-point
   fit), reported in seconds. ``max_disagreement`` reports the largest offset difference
   between segments.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sf_fairseq.data.rates import FPS

if TYPE_CHECKING:
    import torch

REASON = "offset_drift"


@dataclass(frozen=True)
class DriftSettings:
    """Settings of :func:`offset_drift` (see the module docstring)."""

    window_s: float = field(default=2.0, metadata={"help": "drift window length (s)"})
    hop_s: float = field(default=0.5, metadata={"help": "drift window hop (s)"})
    min_prominence: float = field(
        default=0.05,
        metadata={"help": "a window is confident when its S(k) peak exceeds the curve's median "
                  "by this much (cosine units)"},
    )
    min_speech_fraction: float = field(
        default=0.5, metadata={"help": "a confident window has at least this fraction of speech frames"}
    )
    max_disagreement: int = field(
        default=3, metadata={"help": "flag drift when segments' offsets differ by more (frames)"}
    )
    min_segment_windows: int = field(
        default=3, metadata={"help": "confident consecutive windows needed to form a segment"}
    )


@dataclass
class DriftSegment:
    """A stretch of the clip with one offset (frames; seconds from the clip's start)."""

    start_s: float
    end_s: float
    offset: int
    offset_ms: float
    n_windows: int


@dataclass
class DriftResult:
    """Per-window offsets, segments and the drift flag of one clip."""

    drifting: bool
    max_disagreement: int  # largest offset difference between segments (frames)
    change_times_s: list[float]
    segments: list[DriftSegment]
    window_start_s: list[float]
    window_end_s: list[float]
    window_offset: list[int]
    window_prominence: list[float]
    window_confident: list[bool]
    settings: DriftSettings

    def as_record(self) -> dict[str, Any]:
        """The JSON-ready ``drift`` field of a score record."""
        return {
            "drifting": self.drifting,
            "max_disagreement_frames": self.max_disagreement,
            "change_times_s": self.change_times_s,
            "segments": [asdict(s) for s in self.segments],
            "windows": {
                "start_s": self.window_start_s,
                "end_s": self.window_end_s,
                "best_offset": self.window_offset,
                "prominence": self.window_prominence,
                "confident": self.window_confident,
            },
            "settings": asdict(self.settings),
        }



def float64_values(values: "torch.Tensor | np.ndarray") -> np.ndarray:
    """``values`` as a float64 array; torch is only consulted if it is already imported (a
    tensor cannot exist otherwise), so numpy-only callers never import it."""
    torch_module = sys.modules.get("torch")
    if torch_module is not None and isinstance(values, torch_module.Tensor):
        values = values.detach().double().cpu().numpy()
    return np.asarray(values, dtype=np.float64)

def _window_starts(n_frames: int, win: int, hop: int) -> np.ndarray:
    starts = np.arange(0, n_frames - win + 1, hop)
    if starts[-1] + win < n_frames:  # cover the end, as score.window_scores does
        starts = np.append(starts, n_frames - win)
    return starts


def change_point(sims: np.ndarray, lo: int, hi: int, k_a: int, k_b: int) -> int:
    """The frame ``t`` in ``[lo, hi]`` maximising ``sum_{i<t} s_i(k_a) + sum_{i>=t} s_i(k_b)``
    (``k_a``, ``k_b`` column indices of ``sims``); the first on ties."""
    gain = np.concatenate([[0.0], np.cumsum(sims[lo:hi, k_a] - sims[lo:hi, k_b])])
    return lo + int(np.argmax(gain))


def offset_drift(
    sims: torch.Tensor | np.ndarray,
    fps: float = float(FPS),
    settings: DriftSettings = DriftSettings(),
    speech: np.ndarray | None = None,
) -> DriftResult:
    """Per-window best offsets of one clip and whether they drift (module docstring).

    Args:
        sims: ``s_i(k)``, shape ``(T, 2K + 1)`` (``ClipResult.sims``).
        fps: frame rate of ``sims``.
        settings: windows, confidence and flag thresholds.
        speech: optional ``(T,)`` bool speech mask (frames past its end count as silence).
    """
    s = float64_values(sims)
    t, width = s.shape
    max_offset = (width - 1) // 2
    if t == 0:
        return DriftResult(False, 0, [], [], [], [], [], [], [], settings)
    win = max(1, min(t, int(round(settings.window_s * fps))))
    hop = max(1, int(round(settings.hop_s * fps)))
    starts = _window_starts(t, win, hop)
    prefix = np.concatenate([np.zeros((1, width)), np.cumsum(s, axis=0)])
    curves = (prefix[starts + win] - prefix[starts]) / win  # (n_windows, 2K + 1)
    best = curves.argmax(axis=1)
    prominence = curves.max(axis=1) - np.median(curves, axis=1)
    confident = (prominence >= settings.min_prominence) & (np.abs(best - max_offset) < max_offset)
    if speech is not None:
        mask = np.zeros(t, dtype=np.float64)
        n = min(t, len(speech))
        mask[:n] = np.asarray(speech[:n], dtype=np.float64)
        speech_prefix = np.concatenate([[0.0], np.cumsum(mask)])
        fraction = (speech_prefix[starts + win] - speech_prefix[starts]) / win
        confident &= fraction >= settings.min_speech_fraction

    offsets = best - max_offset
    # Runs of confident windows staying within max_disagreement of the run's first window.
    runs: list[list[int]] = []
    for w in np.flatnonzero(confident):
        if runs and runs[-1][-1] == w - 1 and abs(offsets[w] - offsets[runs[-1][0]]) <= settings.max_disagreement:
            runs[-1].append(int(w))
        else:
            runs.append([int(w)])
    # Segments: long enough runs; neighbours that agree merge.
    kept: list[list[int]] = []
    for run in (r for r in runs if len(r) >= settings.min_segment_windows):
        if kept and abs(np.median(offsets[run]) - np.median(offsets[kept[-1]])) <= settings.max_disagreement:
            kept[-1] = kept[-1] + run
        else:
            kept.append(run)
    runs = kept
    run_offsets = [int(np.round(np.median(offsets[r]))) for r in runs]
    disagreement = max(run_offsets) - min(run_offsets) if run_offsets else 0
    # Boundaries: one change point between consecutive segments, searched from the first frame
    # of the earlier one's last window to the last frame of the later one's first window.
    bounds = [0]
    for (a, b), k_a, k_b in zip(zip(runs, runs[1:]), run_offsets, run_offsets[1:]):
        lo = max(int(starts[a[-1]]), bounds[-1])
        hi = max(int(starts[b[0]] + win), lo)
        bounds.append(change_point(s, lo, hi, k_a + max_offset, k_b + max_offset))
    bounds.append(t)
    segments = [
        DriftSegment(bounds[j] / fps, bounds[j + 1] / fps, k, k * 1000.0 / fps, len(r))
        for j, (r, k) in enumerate(zip(runs, run_offsets))
    ]
    changes = [bounds[j + 1] / fps for j in range(len(runs) - 1)
               if abs(run_offsets[j + 1] - run_offsets[j]) > settings.max_disagreement]
    return DriftResult(
        drifting=disagreement > settings.max_disagreement,
        max_disagreement=disagreement,
        change_times_s=changes,
        segments=segments,
        window_start_s=(starts / fps).tolist(),
        window_end_s=((starts + win) / fps).tolist(),
        window_offset=offsets.astype(int).tolist(),
        window_prominence=prominence.tolist(),
        window_confident=confident.tolist(),
        settings=settings,
    )
