"""Evidence pack: one self-contained HTML file an analyst can open offline for one video.

For each face track the pack shows the verdict and its reasons, the score against the real-only
reference distribution (when one is given), the S(k) offset curve, a time line of per-window
scores at the best offset (speech band, drift track and worst windows marked), the mouth-ROI
frames of the worst and the best windows, the waveform on the same time axis, the transcripts
and the provenance table. Every image is an inline PNG (``data:`` URI) and the styles are
inline: the file needs no network and no other file.

Fields a record does not hold (e.g. no verdict without the issue-15 analysis, no drift, no
provenance) are shown as "not computed", never guessed.

Python use::

    tracks = [TrackEvidence(record, result, roi_video, wav, speech_mask)]
    write_evidence_pack("clip.evidence.html", tracks, title="clip.mp4")
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import jinja2
import numpy as np

from sf_fairseq.data.audio_io import read_wav_checked
from sf_fairseq.data.rates import FPS, SAMPLE_RATE
from sf_fairseq.data.video import load_video_frames
from sf_fairseq.resume import atomic_write_text

from .speech import SpeechSettings
from .verdict import REASONS

if TYPE_CHECKING:  # matplotlib and the scorer (torch) load only when a pack is drawn or scored
    from matplotlib.figure import Figure

    from .pipeline import ClipResult

TEMPLATES = Path(__file__).resolve().parent / "templates"
NOT_COMPUTED = "not computed"
# Verdict -> CSS class of its badge.
VERDICT_STYLE = {"real": "real", "fake": "fake", "inconclusive": "inconclusive"}


@dataclass
class TrackEvidence:
    """What one face track's section is made of.

    Attributes:
        record: the track's score record (:mod:`.results` fields, plus the issue-15 fields
            ``verdict``, ``reasons``, ``score_speech``, ``speech_seconds``, ``p_value``,
            ``drift``, ``provenance`` and ``transcripts`` when present).
        result: the scorer's :class:`.pipeline.ClipResult` (``sims`` gives the time line);
            None: no time line or frame strip.
        roi_video: the mouth-ROI video that was scored (frame strip); None: no strip.
        wav: the 16 kHz mono wav that was scored (waveform); None: no waveform.
        speech: per-frame (25 fps) speech mask of the audio; None: no speech band.
    """

    record: Mapping[str, Any]
    result: ClipResult | None = None
    roi_video: str | os.PathLike | None = None
    wav: str | os.PathLike | None = None
    speech: np.ndarray | None = None


@dataclass
class Windows:
    """Consecutive windows of ``s_i(k*)`` at the clip's best offset ``k*``."""

    start_s: np.ndarray
    end_s: np.ndarray
    score: np.ndarray
    speech_fraction: np.ndarray  # NaN without a speech mask

    def ranked(self, n_worst: int) -> tuple[list[int], int | None]:
        """Indices of the (at most) ``n_worst`` lowest windows and of the highest one (None with
        a single window). With a speech mask only windows that are mostly speech are ranked
        (silence says nothing about the lips), unless none is."""
        if self.score.size == 0:
            return [], None
        candidates = np.flatnonzero(self.speech_fraction >= 0.5)
        if candidates.size == 0:
            candidates = np.arange(self.score.size)
        order = candidates[np.argsort(self.score[candidates], kind="stable")]
        if order.size == 1:
            return [int(order[0])], None
        # Always leave the best window out of the worst ones, so a short clip shows both.
        return [int(i) for i in order[: min(n_worst, order.size - 1)]], int(order[-1])


def best_offset_windows(
    sims: np.ndarray, best_offset: int, fps: float, window_s: float, speech: np.ndarray | None
) -> Windows:
    """Mean ``s_i(k*)`` over consecutive ``window_s`` windows (the last one may be shorter),
    with each window's speech fraction."""
    t, width = sims.shape
    column = sims[:, best_offset + (width - 1) // 2].astype(np.float64)
    win = max(1, int(round(window_s * fps)))
    starts = np.arange(0, t, win)
    ends = np.minimum(starts + win, t)
    scores = np.array([column[a:b].mean() for a, b in zip(starts, ends)])
    if speech is None:
        fraction = np.full(starts.size, np.nan)
    else:
        mask = np.zeros(t, dtype=np.float64)
        n = min(t, len(speech))
        mask[:n] = np.asarray(speech[:n], dtype=np.float64)
        fraction = np.array([mask[a:b].mean() for a, b in zip(starts, ends)])
    return Windows(starts / fps, ends / fps, scores, fraction)


def new_figure(**kwargs: Any) -> Figure:
    """A matplotlib figure (no pyplot state, safe in threads)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def png_data_uri(fig: Figure, dpi: int = 100) -> str:
    """The figure as an inline ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def speech_spans(speech: np.ndarray, fps: float) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of each run of speech frames."""
    m = np.concatenate([[False], np.asarray(speech, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [(a / fps, b / fps) for a, b in zip(edges[::2], edges[1::2])]


def offset_curve_figure(record: Mapping[str, Any]) -> str:
    """S(k) against the offset in ms (and the speech-gated curve when recorded)."""
    curve = record["curve"]
    k_max = (len(curve) - 1) // 2
    fps = float(record.get("fps") or FPS)
    ms = [(k - k_max) * 1000.0 / fps for k in range(len(curve))]
    fig = new_figure(figsize=(7, 2.8))
    ax = fig.add_subplot()
    ax.plot(ms, curve, marker=".", label="S(k), all frames (the paper's score)")
    gated = record.get("curve_speech")
    if gated:
        ax.plot(ms, [np.nan if c is None else c for c in gated], marker=".", alpha=0.8,
                label="S(k), speech frames only")
    best = record.get("best_offset_ms")
    if best is not None:
        ax.axvline(best, c="r", ls="--", lw=1, label=f"best offset {best:+.0f} ms")
    ax.set(xlabel="audio-video offset (ms; > 0: audio lags video)", ylabel="mean similarity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png_data_uri(fig)


def reference_figure(score: float, reference: Sequence[float], field: str) -> str:
    """Histogram of the real-only reference scores with this clip's score."""
    fig = new_figure(figsize=(7, 2.2))
    ax = fig.add_subplot()
    ax.hist(np.asarray(reference, dtype=np.float64), bins=min(40, max(5, len(reference) // 5)),
            color="#7a9cc6", label=f"real reference clips (n={len(reference)})")
    ax.axvline(score, c="r", lw=2, label=f"this clip: {score:.3f}")
    ax.set(xlabel=f"{field} (higher = more likely real)", ylabel="clips")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png_data_uri(fig)


def waveform_envelope(samples: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times_s, low, high)``: per-bin min and max of the samples (int16 scale -> [-1, 1])."""
    x = np.asarray(samples, dtype=np.float64) / 32768.0
    n_bins = max(1, min(n_bins, x.size))
    edges = np.linspace(0, x.size, n_bins + 1).astype(int)
    low = np.array([x[a:b].min() for a, b in zip(edges[:-1], edges[1:])])
    high = np.array([x[a:b].max() for a, b in zip(edges[:-1], edges[1:])])
    return edges[:-1] / SAMPLE_RATE, low, high


def timeline_figure(
    track: TrackEvidence, windows: Windows | None, worst: list[int], best: int | None, fps: float
) -> str:
    """Per-window scores, drift track and waveform on one time axis, with the speech band."""
    record = track.record
    drift = record.get("drift")
    rows = [r for r, show in (("scores", windows is not None), ("drift", bool(drift)),
                              ("wave", track.wav is not None)) if show]
    fig = new_figure(figsize=(9, 1.0 + 1.6 * len(rows)))
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    spans = speech_spans(track.speech, fps) if track.speech is not None else []
    for ax in axes:
        for a, b in spans:
            ax.axvspan(a, b, color="#b7e0b0", alpha=0.45, lw=0)
    for ax, row in zip(axes, rows):
        if row == "scores":
            colours = ["#8aa6c8"] * windows.score.size
            for i in worst:
                colours[i] = "#d9534f"
            if best is not None:
                colours[best] = "#3c9d4e"
            ax.bar(windows.start_s, windows.score, width=windows.end_s - windows.start_s,
                   align="edge", color=colours, edgecolor="white")
            ax.axhline(record["score"], c="k", ls="--", lw=1, label=f"clip score {record['score']:.3f}")
            ax.set_ylabel("window score")
            ax.set_title("per-window similarity at the best offset (red: worst, green: best; "
                         "green band: speech)", fontsize=8)
            ax.legend(fontsize=7, loc="lower right")
        elif row == "drift":
            w = drift["windows"]
            mids = [(a + b) / 2 for a, b in zip(w["start_s"], w["end_s"])]
            sure = np.asarray(w["confident"], dtype=bool)
            offsets = np.asarray(w["best_offset"], dtype=np.float64)
            mids = np.asarray(mids)
            ax.plot(mids[sure], offsets[sure], "o", ms=4, c="#34495e", label="confident window")
            ax.plot(mids[~sure], offsets[~sure], "o", ms=4, mfc="none", c="#95a5a6", label="not confident")
            for t in drift.get("change_times_s") or ():
                ax.axvline(t, c="#d9534f", lw=2)
            ax.set_ylabel("best offset\n(frames)")
            ax.legend(fontsize=7, loc="upper right")
        else:
            samples = read_wav_checked(track.wav, SAMPLE_RATE)
            if windows is not None:  # the part that was scored
                samples = samples[: int(round(windows.end_s[-1] * SAMPLE_RATE))]
            times, low, high = waveform_envelope(samples, 1500)
            ax.fill_between(times, low, high, color="#555", lw=0)
            ax.set_ylim(-1, 1)
            ax.set_ylabel("audio")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return png_data_uri(fig)


def frame_strip_figure(
    roi_video: str | os.PathLike, windows: Windows, picks: list[tuple[str, int]], fps: float, per_window: int = 6
) -> str:
    """Rows of mouth-ROI frames, one row per picked window (label, window index)."""
    frames = load_video_frames(roi_video)
    fig = new_figure(figsize=(1.3 * per_window, 1.5 * len(picks)))
    axes = fig.subplots(len(picks), per_window, squeeze=False)
    for row, (label, w) in enumerate(picks):
        a = int(round(windows.start_s[w] * fps))
        b = max(a + 1, int(round(windows.end_s[w] * fps)))
        for col, i in enumerate(np.linspace(a, b - 1, per_window).round().astype(int)):
            ax = axes[row, col]
            ax.imshow(frames[min(i, len(frames) - 1)], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{i / fps:.2f} s", fontsize=7)
        axes[row, 0].set_ylabel(f"{label}\n{windows.score[w]:.3f}", fontsize=8)
    fig.tight_layout()
    return png_data_uri(fig)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, text)`` rows of a nested JSON-like value (lists of scalars on one row)."""
    if isinstance(value, Mapping):
        rows = []
        for key, item in value.items():
            rows += flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows or [(prefix, "{}")]
    if isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
        rows = []
        for i, item in enumerate(value):
            rows += flatten(item, f"{prefix}[{i}]")
        return rows or [(prefix, "[]")]
    if value is None:
        return [(prefix, "null")]
    return [(prefix, value if isinstance(value, str) else json.dumps(value))]


def fmt(value: Any, digits: int = 4) -> str:
    """A number for the tables (``not computed`` for a missing one)."""
    if value is None:
        return NOT_COMPUTED
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def reason_rows(reasons: Sequence[str]) -> list[dict[str, str]]:
    """Code, kind and meaning of each reason (from :data:`.verdict.REASONS`)."""
    rows = []
    for code in reasons:
        kind, meaning = REASONS.get(code, ("unknown", "not a documented reason code"))
        rows.append({"code": code, "kind": kind, "meaning": meaning})
    return rows


def score_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The numbers of one track, as (label, text)."""
    offset = record.get("best_offset")
    rows = [
        ("score (the paper's rule, all frames)", fmt(record.get("score"))),
        ("best offset", NOT_COMPUTED if offset is None
         else f"{offset:+d} frames ({record.get('best_offset_ms', 0.0):+.0f} ms; > 0: audio lags video)"),
        ("score_speech (speech frames only)", fmt(record.get("score_speech"))),
        ("speech_seconds", fmt(record.get("speech_seconds"), 2)),
        ("speech_fraction", fmt(record.get("speech_fraction"), 3)),
        ("p_value", fmt(record.get("p_value")) + (f" (alpha {record['alpha']:g})" if record.get("alpha") else "")),
        ("scored frames", fmt(record.get("n_frames"))),
    ]
    dynamic = record.get("dynamic_offset")
    if dynamic:
        rows.append(("dynamic-offset score", fmt(dynamic.get("score"))))
    return rows


def track_section(
    track: TrackEvidence,
    reference: Sequence[float] | None,
    reference_field: str,
    window_s: float,
    n_worst: int,
) -> dict[str, Any]:
    """Everything the template shows for one track."""
    record = track.record
    fps = float(record.get("fps") or FPS)
    windows = worst = best = None
    if track.result is not None:
        sims = track.result.sims.double().numpy()
        windows = best_offset_windows(sims, track.result.best_offset, fps, window_s, track.speech)
        worst, best = windows.ranked(n_worst)
    images: dict[str, str | None] = dict.fromkeys(("curve", "reference", "timeline", "frames"))
    if record.get("curve"):
        images["curve"] = offset_curve_figure(record)
    judged = record.get(reference_field)
    if reference and judged is not None:
        images["reference"] = reference_figure(judged, reference, reference_field)
    if windows is not None or track.wav is not None or record.get("drift"):
        images["timeline"] = timeline_figure(track, windows, worst or [], best, fps)
    if windows is not None and track.roi_video is not None:
        picks = [(f"worst {n + 1}", w) for n, w in enumerate(worst[:2])]
        if best is not None:
            picks.append(("best", best))
        images["frames"] = frame_strip_figure(track.roi_video, windows, picks, fps)
    worst_rows = [] if windows is None else [
        {"start": f"{windows.start_s[w]:.2f}", "end": f"{windows.end_s[w]:.2f}",
         "score": f"{windows.score[w]:.4f}",
         "speech": "" if np.isnan(windows.speech_fraction[w]) else f"{windows.speech_fraction[w]:.0%}"}
        for w in worst
    ]
    drift = record.get("drift")
    reference_text = None
    if reference and judged is not None:
        below = int(np.sum(np.asarray(reference) <= judged))
        reference_text = (f"{below} of {len(reference)} real reference clips score at or below this "
                          f"clip's {reference_field} ({judged:.4f}).")
    return {
        "name": record.get("track") or record.get("id") or "clip",
        "verdict": record.get("verdict"),
        "verdict_class": VERDICT_STYLE.get(record.get("verdict"), "none"),
        "reasons": None if record.get("reasons") is None else reason_rows(record["reasons"]),
        "scores": score_rows(record),
        "reference_text": reference_text,
        "images": images,
        "window_s": window_s,
        "worst": worst_rows,
        "drift": drift,
        "transcripts": record.get("transcripts"),
        "provenance": flatten(record["provenance"]) if record.get("provenance") else None,
    }


def recorded_speech_settings(record: Mapping[str, Any]) -> SpeechSettings:
    """The voice-activity settings a record was scored with (its provenance), so that the
    pack's speech band is the one the verdict used; the defaults for a record without them."""
    recorded = ((record.get("provenance") or {}).get("settings") or {}).get("speech") or {}
    return SpeechSettings(**{f.name: recorded[f.name] for f in fields(SpeechSettings) if f.name in recorded})


def rescore_for_evidence(scorer: Any, record: Mapping[str, Any], tolerance: float = 1e-3) -> TrackEvidence:
    """A batch record's :class:`TrackEvidence`: its clip (``video``, ``audio``) scored again to
    get what records do not keep (the per-frame similarities and the speech mask).

    Raises:
        OSError, ValueError: the clip cannot be read again, or its new score differs from the
            record's by more than ``tolerance`` (another checkpoint, layer or settings: the pack
            would contradict the record).
    """
    from .encode import load_clip
    from .speech import analyse_wav

    options = scorer.options
    clip = load_clip(record["video"], record["audio"], scorer.settings, options.max_seconds, options.fps)
    result = scorer.score_clips([clip])[0]
    if record.get("score") is not None and abs(result.score - record["score"]) > tolerance:
        raise ValueError(
            f"{record['id']}: scored again {result.score:.6f}, the record says {record['score']:.6f}; "
            "give the checkpoint, layer and settings the record was scored with"
        )
    speech = analyse_wav(record["audio"], recorded_speech_settings(record), options.max_seconds).speech
    return TrackEvidence({"fps": options.fps, **record}, result, record["video"], record["audio"], speech)


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )


def render_evidence_pack(
    tracks: Sequence[TrackEvidence],
    title: str,
    reference: Sequence[float] | None = None,
    reference_field: str = "score",
    window_s: float = 1.0,
    n_worst: int = 3,
) -> str:
    """The evidence pack of one video as an HTML string.

    Args:
        tracks: one entry per face track, the track giving the video's verdict first.
        title: the video's name.
        reference: real-only reference scores (of ``reference_field``) to compare with.
        reference_field: the record field the reference scores are of (``score`` or
            ``score_speech``).
        window_s: length of the time line's windows (s).
        n_worst: number of worst windows highlighted.
    """
    if not tracks:
        raise ValueError("an evidence pack needs at least one track")
    sections = [track_section(t, reference, reference_field, window_s, n_worst) for t in tracks]
    return environment().get_template("evidence.html").render(
        title=title,
        sections=sections,
        verdict=sections[0]["verdict"],
        verdict_class=sections[0]["verdict_class"],
        not_computed=NOT_COMPUTED,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def write_evidence_pack(path: str | os.PathLike, tracks: Sequence[TrackEvidence], title: str, **options: Any) -> Path:
    """Write :func:`render_evidence_pack` to ``path`` atomically; returns the path."""
    atomic_write_text(path, render_evidence_pack(tracks, title, **options))
    return Path(path)
