"""The single-video scoring engine of ``sf-score-video`` (:mod:`.score_video`, the command) and
``sf-serve``: every face track of one video scored, with its verdict, per-window and
dynamic-offset analyses, transcripts and provenance (:func:`score_video_tracks`), and the
outputs made from them (curves PNG, Markdown summary, evidence pack).

Input kinds, records and statuses are described in :mod:`.score_video`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2

from . import score as sc
from .batch_engine import transcribe_batch
from .encode import load_clip
from .evidence import TrackEvidence, write_evidence_pack
from .pipeline import ClipResult, ScoreOptions, Scorer
from .provenance import clip_provenance
from .speech import analyse_wav
from .transcriber import Transcriber
from .verdict import (
    PREPARE_STATUS_REASONS,
    MediaChecks,
    VerdictConfig,
    assess_clip,
    face_stats_from_prepare,
    media_checks_from_prepare,
    summary_lines,
    unscored_verdict,
)

logger = logging.getLogger(__name__)

ROI_MAX_SIDE = 128


class ScoreVideoError(RuntimeError):
    """The video cannot be scored (the message says why)."""


class NoRoiAudio(ScoreVideoError):
    """A mouth-ROI-sized video without its wav."""


def roi_sized(video: str) -> bool:
    """``auto`` input kind: frames of at most ``ROI_MAX_SIDE`` pixels make a mouth ROI."""
    capture = cv2.VideoCapture(video)
    try:
        width = capture.get(cv2.CAP_PROP_FRAME_WIDTH)
        height = capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    finally:
        capture.release()
    return 0 < max(width, height) <= ROI_MAX_SIDE


def roi_wav(video: str, audio: str | None) -> str:
    """The wav of a ROI video: ``audio``, else the ``.wav`` beside the video."""
    return audio or os.path.splitext(video)[0] + ".wav"


def prepare_raw(video: str, work_dir: str) -> dict[str, Any]:
    """Mouth ROI(s), wav and landmarks of a raw video via the preprocessing stage.

    Returns:
        The preprocessing status record (:mod:`sf_fairseq.preprocess.prepare_engine`; paths relative
        to ``work_dir``): status ``ok`` or ``truncated`` (``tracks`` most-seen face first,
        ``audio``, ``landmarks``), or one of :data:`.verdict.PREPARE_STATUS_REASONS`
        (``no_face``, ``no_audio``, ``too_short``: an input the verdict calls inconclusive).

    Raises:
        ScoreVideoError: any other status (unreadable input, unexpected failure).
    """
    from sf_fairseq.preprocess.prepare_engine import InputItem, VideoPreprocessor

    item = InputItem(id=Path(video).stem, path=os.path.abspath(video))
    record = VideoPreprocessor().process(item, work_dir)
    if record["status"] not in ("ok", "truncated") and record["status"] not in PREPARE_STATUS_REASONS:
        raise ScoreVideoError(f"{video}: preprocessing failed ({record['status']}): {record.get('reason')}")
    return record


def analyse(
    result: ClipResult, options: ScoreOptions, window_s: float, hop_s: float, smooth_frames: int
) -> dict[str, Any]:
    """Record fields of one scored clip, with per-window and dynamic-offset analyses."""
    win = sc.window_scores(result.sims, window_s, hop_s, options.fps)
    dyn_score, dyn_offsets = sc.dynamic_offset_score(result.sims, smooth_frames)
    return {
        **result.as_record(),
        "fps": options.fps,
        "offsets": list(range(-options.max_offset, options.max_offset + 1)),
        "windows": {
            "window_s": window_s,
            "hop_s": hop_s,
            "start_s": win.start_s.tolist(),
            "end_s": win.end_s.tolist(),
            "score": win.scores.tolist(),
            "best_offset": win.best_offsets.tolist(),
        },
        "dynamic_offset": {
            "smooth_frames": smooth_frames,
            "score": dyn_score,
            "offsets": dyn_offsets.tolist(),
        },
    }


def plot_result(record: dict[str, Any], path: str | os.PathLike, threshold: float | None, title: str) -> None:
    """PNG: the S(k) curve (offset in ms) and the per-window scores over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = record["fps"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6))
    ms = [k * 1000.0 / fps for k in record["offsets"]]
    ax1.plot(ms, record["curve"], marker=".")
    ax1.axvline(record["best_offset_ms"], c="r", ls="--", lw=1,
                label=f"best {record['best_offset_ms']:+.0f} ms, S = {record['score']:.3f}")
    ax1.set(xlabel="offset (ms; > 0: audio lags video)", ylabel="S(k)", title=title)
    ax1.legend(fontsize=8)
    win = record["windows"]
    mids = [(a + b) / 2 for a, b in zip(win["start_s"], win["end_s"])]
    half = [(b - a) / 2 for a, b in zip(win["start_s"], win["end_s"])]
    ax2.errorbar(mids, win["score"], xerr=half, fmt="o-", ms=4, capsize=2)
    for x, y, k in zip(mids, win["score"], win["best_offset"]):
        ax2.annotate(f"{k:+d}", (x, y), ha="center", va="bottom", fontsize=6)
    if threshold is not None:
        ax2.axhline(threshold, c="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
        ax2.legend(fontsize=8)
    ax2.set(xlabel="time (s)", ylabel="window score",
            title=f"{win['window_s']:g} s windows every {win['hop_s']:g} s (bars: window span; "
            "labels: best offset, frames)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class ScoredVideo:
    """Everything one video's scoring produced.

    Attributes:
        result: the JSON result: ``input``, ``input_kind``, the first track's verdict fields
            (:data:`SUMMARY_FIELDS`), ``tracks`` (one record per face track) and, for a raw
            video, ``prepare`` (its preprocessing status, reason and notes).
        tracks: per face track, the record and what the evidence pack needs besides (the
            scorer's per-frame similarities, the ROI video, the wav, the speech mask).
    """

    result: dict[str, Any]
    tracks: list[TrackEvidence]


# Fields of the first track repeated at the top of a result: the video's verdict.
SUMMARY_FIELDS = ("verdict", "reasons", "score", "best_offset", "best_offset_ms", "score_speech",
                  "speech_seconds", "speech_fraction", "p_value")


def unscored_track(track_id: str, reason: str, provenance: dict[str, Any] | None) -> dict[str, Any]:
    """The record of a video the preprocessing could not turn into a scorable clip (no face, no
    audio, too short): ``inconclusive`` with that reason, no score."""
    record = {"track": track_id, "roi_video": None, "audio": None,
              **dict.fromkeys(("score", "best_offset", "best_offset_ms", "n_frames", "curve")),
              **unscored_verdict([reason])}
    if provenance is not None:
        record["provenance"] = provenance
    return record


def score_video_tracks(
    scorer: Scorer,
    video: str,
    audio: str | None = None,
    input_kind: str = "auto",
    work_dir: str | None = None,
    window_s: float = 2.0,
    hop_s: float = 1.0,
    smooth_frames: int = 25,
    transcriber: Transcriber | None = None,
    transcriber_name: str = "transcriber",
    checkpoint: str | os.PathLike | None = None,
    verdict: VerdictConfig | None = None,
    progress: Callable[[str], None] | None = None,
    group: str | None = None,
) -> ScoredVideo:
    """Score every face track of ``video`` and give each its verdict (:mod:`.verdict`).

    Each track record holds the score fields (the paper's ``score``, unchanged), the per-window
    and dynamic-offset analyses, the verdict fields (``verdict``, ``reasons``, ``score_speech``,
    ``speech_seconds``, ``p_value``, ``drift``, ...) and, when ``checkpoint`` (the file the
    scorer was loaded from) is given, ``provenance``. A raw video that the preprocessing finds
    without a face or audio, or too short, gives one unscored ``inconclusive`` record with that
    reason; a truncated one is scored with reason ``truncated_input``.

    Args:
        transcriber: also decode each track from its lips alone and its audio alone
            (``transcripts``, see the module docstring).
        verdict: thresholds, drift and voice-activity settings, reference set (None: the
            defaults, no reference set).
        progress: called with the name of each stage as it starts.
        group: the reference group of this video (the value of the reference set's
            ``group_by`` field, e.g. a language); recorded in each track under that field.

    Raises:
        ScoreVideoError: missing input, failed preprocessing, unreadable ROI or wav.
    """
    stage = progress or (lambda name: None)
    verdict = verdict or VerdictConfig()
    if os.path.isdir(video):
        raise ScoreVideoError(f"video path is not a file (a directory): {video!r}")
    if not os.path.exists(video):
        raise ScoreVideoError(f"video file not found: {video!r}")
    kind = input_kind
    if kind == "auto":
        kind = "roi" if roi_sized(video) else "raw"

    def provenance(files: dict[str, str]) -> dict[str, Any] | None:
        if checkpoint is None:
            return None
        return clip_provenance(video, files, checkpoint, scorer, verdict.speech,
                               windows={"window_s": window_s, "hop_s": hop_s, "smooth_frames": smooth_frames},
                               **verdict.provenance())

    prepared = None
    stage("preprocessing")
    if kind == "roi":
        wav = roi_wav(video, audio)
        if not os.path.exists(wav):
            raise NoRoiAudio(
                f"no audio for this ROI: expected {wav!r} (give --audio; --input-kind raw if this "
                "is a small full-frame video)"
            )
        clips = [(Path(video).stem, video, wav)]
    else:
        if work_dir is None:
            raise ScoreVideoError("a raw video needs a work directory for its ROI")
        prepared = prepare_raw(video, work_dir)
        reason = PREPARE_STATUS_REASONS.get(prepared["status"])
        if reason is not None:
            logger.warning("%s: preprocessing ended %s (%s); not scored", video, prepared["status"],
                           prepared.get("reason"))
            record = unscored_track(Path(video).stem, reason, provenance({}))
            return _scored_video(video, kind, prepared, [TrackEvidence(record)])
        wav = os.path.join(work_dir, prepared["audio"])
        clips = [(t["id"], os.path.join(work_dir, t["video"]), wav) for t in prepared["tracks"]]
    options = scorer.options
    try:
        loaded = [load_clip(v, a, scorer.settings, options.max_seconds, options.fps) for _, v, a in clips]
        stage("scoring")
        results = scorer.score_clips(loaded)
        stage("verdict")
        audio_analysis = analyse_wav(clips[0][2], verdict.speech, options.max_seconds)  # one wav for all tracks
    except (OSError, ValueError) as err:
        raise ScoreVideoError(str(err)) from err
    tracks = []
    for k, ((track_id, v, a), clip, result) in enumerate(zip(clips, loaded, results)):
        record = {"track": track_id, "roi_video": v, "audio": a,
                  **analyse(result, options, window_s, hop_s, smooth_frames)}
        if group is not None and verdict.reference is not None and verdict.reference.group_by:
            record[verdict.reference.group_by] = group
        prov = provenance({"video": v, "audio": a})
        lengths = {"video_frames": len(clip.video), "audio_frames": len(clip.audio)}
        if prepared is None:
            face, media = None, MediaChecks(**lengths)
        else:
            face = face_stats_from_prepare(work_dir, prepared, prepared["tracks"][k]["track"])
            media = media_checks_from_prepare(prepared, **lengths)
        record.update(assess_clip(result, options, audio_analysis, verdict.settings, verdict.reference, record,
                                  prov, verdict.drift, face, media))
        if prov is not None:
            record["provenance"] = prov
        tracks.append(TrackEvidence(record, result, v, a, audio_analysis.speech))
    if transcriber is not None:
        stage("transcribing")
        paths = [(v, a) for _, v, a in clips]
        for track, transcripts in zip(tracks, transcribe_batch(transcriber, transcriber_name, loaded, paths, scorer)):
            track.record["transcripts"] = transcripts
    return _scored_video(video, kind, prepared, tracks)


def _scored_video(video: str, kind: str, prepared: dict[str, Any] | None,
                  tracks: list[TrackEvidence]) -> ScoredVideo:
    first = tracks[0].record
    result: dict[str, Any] = {"input": os.path.abspath(video), "input_kind": kind,
                              **{f: first.get(f) for f in SUMMARY_FIELDS}}
    if prepared is not None:
        result["prepare"] = {k: prepared.get(k) for k in ("status", "reason", "notes")}
    result["tracks"] = [t.record for t in tracks]
    return ScoredVideo(result, tracks)


def score_video(scorer: Scorer, video: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The JSON result of :func:`score_video_tracks` (same arguments): ``{"input",
    "input_kind", <first track's verdict fields>, "tracks": [record]}``."""
    return score_video_tracks(scorer, video, *args, **kwargs).result


def transcript_lines(transcripts: dict[str, Any]) -> list[str]:
    """The summary lines of a ``transcripts`` field."""
    if transcripts.get("error"):
        return [f"transcripts: failed ({transcripts['error_type']}: {transcripts['error']})"]
    return [
        f"lips read:  {transcripts['lips']}",
        f"audio says: {transcripts['audio']}",
        f"transcript disagreement: words {transcripts['word_disagreement']:.3f}, characters "
        f"{transcripts['char_disagreement']:.3f} (0 = same, 1 = nothing in common)",
    ]


def summary_markdown(result: dict[str, Any], name: str, png_name: str | None) -> str:
    """``<name>.score.md``: the analyst's reading of the first track (:func:`.verdict.summary_lines`),
    the threshold verdict when one was asked for, the other tracks and the transcripts."""
    main_track = result["tracks"][0]
    lines = [f"# {name}", "", f"- input: `{result['input']}` ({result['input_kind']})"]
    lines += [f"- {line}" for line in summary_lines(main_track)]
    if result.get("threshold") is not None:
        lines.append(f"- threshold verdict (score below {result['threshold']:.4f}: fake): "
                     f"{result['threshold_verdict']}")
    for track in result["tracks"][1:]:
        score = "not scored" if track["score"] is None else f"score {track['score']:.4f}"
        lines.append(f"- other face {track['track']}: verdict {track['verdict']}, {score}")
    for track in result["tracks"]:
        t = track.get("transcripts")
        if t is None:
            continue
        lines += ["", f"## Transcripts, face {track['track']} (model `{t['model']}`)", ""]
        if t.get("error"):
            lines.append(f"Transcription failed: {t['error_type']}: {t['error']}")
            continue
        lines += ["| stream | transcript |", "|---|---|",
                  f"| lips (video alone) | {t['lips'] or '(empty)'} |",
                  f"| audio (audio alone) | {t['audio'] or '(empty)'} |", "",
                  f"Disagreement: words {t['word_disagreement']:.3f}, characters {t['char_disagreement']:.3f} "
                  "(edit distance / length of the longer transcript; 0 = same, 1 = nothing in common)."]
    if png_name is not None:
        lines += ["", f"![score curves]({png_name})"]
    return "\n".join(lines) + "\n"


def write_pack(path: Path, scored: ScoredVideo, verdict: VerdictConfig, title: str) -> None:
    """The evidence pack of a scored video, with the reference distribution when one is given."""
    reference = verdict.reference
    scores = reference.scores_for(scored.tracks[0].record) if reference is not None else None
    write_evidence_pack(path, scored.tracks, title=title, reference=scores,
                        reference_field=reference.score_field if reference is not None else "score")
