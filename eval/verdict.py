"""A verdict an analyst can defend: ``real``, ``fake`` or ``inconclusive``, with reasons.

Every scored clip gets ``verdict`` and ``reasons`` (machine-readable codes, table below). The
decision, in order:

1. Any **input** reason (nothing trustworthy to judge) or **calibration** reason (no reference
   set that applies) -> ``inconclusive``. Bad input is never ``real``, and without a reference
   set the verdict is never a guess.
2. ``p_value < alpha`` (conformal p-value of the clip's score against the real-only reference
   set, :mod:`.conformal`) -> ``fake``.
3. Any **evidence** reason (signs of an edit that the score does not capture, e.g. offset
   drift) -> ``inconclusive``: such a clip is not called ``real``.
4. Otherwise ``real``.

**Note** reasons change nothing; they say what the analyst should know.

Reason codes (:data:`REASONS`; thresholds in :class:`VerdictSettings`):

==========================  ============  ======================================================
code                        kind          meaning
==========================  ============  ======================================================
``no_audio``                input         no audio stream, or no decodable audio
``silent_audio``            input         audio peak below ``silent_peak_dbfs``
``clipped_audio``           input         more than ``max_clipped_fraction`` of the samples at
                                          full scale
``too_little_speech``       input         less than ``min_speech_seconds`` of detected speech
``clip_too_short``          input         fewer than ``min_frames`` scored frames
``no_face``                 input         no face followed (preprocessing found none)
``face_track_short``        input         face followed on less than ``min_face_fraction`` of
                                          the frames
``face_too_small``          input         median face size below ``min_face_px`` pixels
``unstable_landmarks``      input         landmark jitter above ``max_landmark_jitter``
``low_resolution``          input         source video's shorter side below
                                          ``min_resolution_px``
``truncated_input``         input         decoding stopped early, or the audio and video
                                          lengths differ by more than ``max_stream_mismatch_s``
``offset_at_edge``          input         the best offset is at the edge of the search window
                                          (true offset may lie outside; widen ``--max-offset``)
``uncalibrated``            calibration   no reference set given
``reference_too_small``     calibration   the reference set cannot reach ``p < alpha``
                                          (needs ``n + 1 > 1 / alpha`` clips)
``reference_group_missing`` calibration   the reference set has no group for this clip
``reference_mismatch``      calibration   the reference set was scored with another checkpoint,
                                          layer or scoring settings
``offset_drift``            evidence      confident windows disagree on the audio-video offset
                                          (:mod:`.drift`): a re-timed or spliced edit
``duration_capped``         note          only the first ``max_seconds`` were scored
==========================  ============  ======================================================
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from sf_fairseq.data.rates import FPS
from sf_fairseq.records import PrepareRecord
from sf_fairseq.resume import file_sha256

from . import conformal

from .drift import DriftSettings, offset_drift
from .speech import AudioAnalysis, GatedScore, SpeechSettings, gated_score

if TYPE_CHECKING:
    from .pipeline import ClipResult, ScoreOptions

REAL, FAKE, INCONCLUSIVE = "real", "fake", "inconclusive"
INPUT, CALIBRATION, EVIDENCE, NOTE = "input", "calibration", "evidence", "note"

# code -> (kind, meaning); the module docstring's table, for code and reports.
REASONS: dict[str, tuple[str, str]] = {
    "no_audio": (INPUT, "no audio stream, or no decodable audio"),
    "silent_audio": (INPUT, "audio peak below silent_peak_dbfs"),
    "clipped_audio": (INPUT, "more than max_clipped_fraction of the samples at full scale"),
    "too_little_speech": (INPUT, "less than min_speech_seconds of detected speech"),
    "clip_too_short": (INPUT, "fewer than min_frames scored frames"),
    "no_face": (INPUT, "no face followed"),
    "face_track_short": (INPUT, "face followed on less than min_face_fraction of the frames"),
    "face_too_small": (INPUT, "median face size below min_face_px pixels"),
    "unstable_landmarks": (INPUT, "landmark jitter above max_landmark_jitter"),
    "low_resolution": (INPUT, "source video's shorter side below min_resolution_px"),
    "truncated_input": (INPUT, "decoding stopped early, or audio and video lengths differ by more "
                        "than max_stream_mismatch_s"),
    "offset_at_edge": (INPUT, "best offset at the edge of the search window"),
    "uncalibrated": (CALIBRATION, "no reference set given"),
    "reference_too_small": (CALIBRATION, "the reference set cannot reach p < alpha"),
    "reference_group_missing": (CALIBRATION, "the reference set has no group for this clip"),
    "reference_mismatch": (CALIBRATION, "the reference set was scored with another checkpoint, layer "
                           "or scoring settings"),
    "offset_drift": (EVIDENCE, "confident windows disagree on the audio-video offset"),
    "duration_capped": (NOTE, "only the first max_seconds were scored"),
}
INPUT_REASONS = frozenset(c for c, (kind, _) in REASONS.items() if kind == INPUT)


@dataclass(frozen=True)
class VerdictSettings:
    """Thresholds of the verdict (defaults are conservative starting points; each is recorded
    in the record's provenance)."""

    alpha: float = field(default=conformal.DEFAULT_ALPHA, metadata={
        "help": "call a clip fake when its conformal p-value is below alpha (the false-positive "
                "rate on real clips like the reference set's is at most alpha)"})
    min_speech_seconds: float = field(default=2.0, metadata={
        "help": "inconclusive with less detected speech than this (s)"})
    silent_peak_dbfs: float = field(default=-50.0, metadata={
        "help": "audio whose peak is below this level (dB full scale) is silent"})
    max_clipped_fraction: float = field(default=0.01, metadata={
        "help": "audio with more samples at full scale than this fraction is clipped"})
    min_frames: int = field(default=25, metadata={
        "help": "inconclusive with fewer scored frames than this (25 fps)"})
    min_face_fraction: float = field(default=0.8, metadata={
        "help": "inconclusive when the face is followed on less than this fraction of the frames"})
    min_face_px: float = field(default=64.0, metadata={
        "help": "inconclusive when the median face (landmark extent) is smaller (source pixels)"})
    max_landmark_jitter: float = field(default=0.03, metadata={
        "help": "inconclusive when the median landmark acceleration per frame exceeds this "
                "fraction of the face size"})
    min_resolution_px: int = field(default=144, metadata={
        "help": "inconclusive when the source video's shorter side is below this (pixels)"})
    max_stream_mismatch_s: float = field(default=0.5, metadata={
        "help": "truncated input when audio and video lengths differ by more (s)"})


def _add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, title: str, prefix: str = "") -> None:
    group = parser.add_argument_group(title)
    for f in fields(cls):
        group.add_argument(f"--{prefix}{f.name.replace('_', '-')}", dest=f"{prefix.replace('-', '_')}{f.name}",
                           type=type(f.default), default=f.default, help=f.metadata["help"])


def _dataclass_from_arguments(args: argparse.Namespace, cls: type, prefix: str = "") -> Any:
    return cls(**{f.name: getattr(args, f"{prefix.replace('-', '_')}{f.name}") for f in fields(cls)})


@dataclass(frozen=True)
class VerdictConfig:
    """Everything a scoring command needs to give verdicts (see :func:`add_verdict_arguments`)."""

    settings: VerdictSettings = VerdictSettings()
    drift: DriftSettings = DriftSettings()
    speech: SpeechSettings = SpeechSettings()
    reference: conformal.ReferenceSet | None = None
    reference_path: str | None = None

    def provenance(self) -> dict[str, Any]:
        """Settings to record in each record's provenance (beside the scoring settings, which
        hold :attr:`speech`)."""
        return {"verdict_settings": asdict(self.settings), "drift_settings": asdict(self.drift),
                "reference_set": None if self.reference_path is None else {
                    "path": os.path.abspath(self.reference_path), "sha256": file_sha256(self.reference_path)}}


def add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    """``--reference`` and one option per threshold: ``--alpha``, ``--min-speech-seconds``, ...
    (:class:`VerdictSettings`), ``--drift-window-s``, ... (:class:`.drift.DriftSettings`),
    ``--vad-threshold``, ``--vad-pad-frames`` (:class:`.speech.SpeechSettings`)."""
    parser.add_argument("--reference", help="reference set JSON of real-clip scores (sf-reference-set); "
                        "without one every verdict is 'inconclusive' (reason 'uncalibrated')")
    _add_dataclass_arguments(parser, VerdictSettings, "verdict thresholds")
    _add_dataclass_arguments(parser, DriftSettings, "offset drift", "drift-")
    _add_dataclass_arguments(parser, SpeechSettings, "voice activity", "vad-")


def verdict_config_from_arguments(args: argparse.Namespace) -> VerdictConfig:
    """The :class:`VerdictConfig` the options of :func:`add_verdict_arguments` describe.

    Raises:
        ValueError: the reference set cannot be read.
    """
    return VerdictConfig(
        settings=_dataclass_from_arguments(args, VerdictSettings),
        drift=_dataclass_from_arguments(args, DriftSettings, "drift-"),
        speech=_dataclass_from_arguments(args, SpeechSettings, "vad-"),
        reference=None if args.reference is None else conformal.ReferenceSet.load(args.reference),
        reference_path=args.reference,
    )


@dataclass
class FaceStats:
    """Face-track measurements from the preprocessing landmarks of one track.

    Attributes:
        face_fraction: fraction of frames with landmarks.
        size_px: median face size (largest side of the landmark bounding box), source pixels.
        jitter: median over frames of the mean landmark acceleration
            ``|x_{t+1} - 2 x_t + x_{t-1}|``, divided by ``size_px`` (smooth head motion gives
            little acceleration, detector jitter a lot).
    """

    face_fraction: float
    size_px: float
    jitter: float


def face_stats(landmarks: np.ndarray) -> FaceStats:
    """:class:`FaceStats` of one track's landmarks ``(T, 68, 2)`` (NaN where not followed)."""
    followed = ~np.isnan(landmarks).any(axis=(1, 2))
    if not followed.any():
        return FaceStats(0.0, 0.0, float("nan"))
    pts = landmarks[followed].astype(np.float64)
    size = float(np.median((pts.max(axis=1) - pts.min(axis=1)).max(axis=1)))
    accel = landmarks[2:] - 2 * landmarks[1:-1] + landmarks[:-2]  # NaN next to gaps
    per_frame = np.linalg.norm(accel, axis=-1).mean(axis=-1)
    per_frame = per_frame[~np.isnan(per_frame)]
    jitter = float(np.median(per_frame)) / size if per_frame.size and size > 0 else float("nan")
    return FaceStats(float(followed.mean()), size, jitter)


def face_stats_from_prepare(out_dir: str | os.PathLike, record: PrepareRecord | Mapping[str, Any],
                            track: int = 0) -> FaceStats:
    """:class:`FaceStats` of face track ``track`` of a preprocessing status record (its
    ``landmarks`` file, ``[K, T, 68, 2]`` source pixels, under ``out_dir``). ``record`` is a
    :class:`~sf_fairseq.records.PrepareRecord` or its fields as a mapping (read by key: both
    give the on-disk values)."""
    with np.load(Path(out_dir) / record["landmarks"]) as data:
        return face_stats(data["landmarks"][track])


@dataclass
class MediaChecks:
    """Stream facts the verdict checks (None: unknown, not checked).

    Attributes:
        video_frames: video frames loaded for scoring (after the cap).
        audio_frames: audio feature frames loaded for scoring (after the cap).
        source_short_side: shorter side of the source video in pixels (raw inputs).
        truncated: decoding stopped early (e.g. the preprocessing record's notes say so).
    """

    video_frames: int | None = None
    audio_frames: int | None = None
    source_short_side: int | None = None
    truncated: bool = False


def media_checks_from_prepare(record: PrepareRecord | Mapping[str, Any], **loaded: Any) -> MediaChecks:
    """:class:`MediaChecks` from a preprocessing status record (a
    :class:`~sf_fairseq.records.PrepareRecord` or its fields as a mapping):
    the source size, and truncation (its ``truncated`` field, or a note that decoding stopped
    early or that the audio covers less than the video). ``loaded`` adds
    ``video_frames``/``audio_frames``."""
    notes = record.get("notes") or ()
    truncated = bool(record.get("truncated")) or any(
        n.startswith(("decoding stopped", "audio covers")) for n in notes)
    width, height = record.get("width"), record.get("height")
    short = min(width, height) if width and height else None
    return MediaChecks(source_short_side=short, truncated=truncated, **loaded)


def input_reasons(
    n_frames: int,
    fps: float,
    max_offset: int,
    judged_offset: int | None,
    audio: AudioAnalysis | None,
    gated: GatedScore | None,
    settings: VerdictSettings,
    face: FaceStats | None = None,
    media: MediaChecks | None = None,
) -> list[str]:
    """Input reason codes of one clip (see the table).

    Args:
        n_frames, fps: scored frames and their rate.
        max_offset: ``K`` of the offset search.
        judged_offset: best offset of the score the verdict judges (None: no score).
        audio, gated: the wav analysis and the speech-gated score (None: no audio).
        settings: thresholds.
        face, media: optional face-track and stream checks.
    """
    reasons = []
    if audio is None or audio.stats.n_samples == 0:
        reasons.append("no_audio")
    else:
        peak_db = 20 * math.log10(audio.stats.peak) if audio.stats.peak > 0 else -math.inf
        if peak_db < settings.silent_peak_dbfs:
            reasons.append("silent_audio")
        if audio.stats.clipped_fraction > settings.max_clipped_fraction:
            reasons.append("clipped_audio")
    if gated is None or gated.speech_seconds < settings.min_speech_seconds:
        reasons.append("too_little_speech")
    if n_frames < settings.min_frames:
        reasons.append("clip_too_short")
    if face is not None:
        if face.face_fraction == 0:
            reasons.append("no_face")
        elif face.face_fraction < settings.min_face_fraction:
            reasons.append("face_track_short")
        if 0 < face.size_px < settings.min_face_px:
            reasons.append("face_too_small")
        if not math.isnan(face.jitter) and face.jitter > settings.max_landmark_jitter:
            reasons.append("unstable_landmarks")
    if media is not None:
        if media.source_short_side is not None and media.source_short_side < settings.min_resolution_px:
            reasons.append("low_resolution")
        mismatch = (
            media.video_frames is not None and media.audio_frames is not None
            and abs(media.video_frames - media.audio_frames) > settings.max_stream_mismatch_s * fps
        )
        if media.truncated or mismatch:
            reasons.append("truncated_input")
    if judged_offset is not None and abs(judged_offset) >= max_offset:
        reasons.append("offset_at_edge")
    return reasons


def calibration(
    score: float | None,
    reference: conformal.ReferenceSet | None,
    record: Mapping[str, Any],
    provenance: Mapping[str, Any] | None,
    alpha: float,
) -> tuple[float | None, list[str], dict[str, Any] | None]:
    """``(p_value, calibration reasons, reference summary)`` of one clip.

    The p-value is computed whenever a reference group applies and the score exists (also when
    the model keys differ, so that the analyst sees it; the reason makes the verdict
    inconclusive)."""
    if reference is None:
        return None, ["uncalibrated"], None
    group = reference.group_of(record)
    scores = reference.scores_for(record)
    summary = {"score_field": reference.score_field, "group_by": reference.group_by, "group": group,
               "n": None if scores is None else len(scores)}
    if scores is None:
        return None, ["reference_group_missing"], summary
    reasons = []
    if len(scores) < conformal.min_reference_size(alpha):
        reasons.append("reference_too_small")
    if reference.model and provenance and conformal.model_key(provenance) != reference.model:
        reasons.append("reference_mismatch")
    p = None if score is None else conformal.conformal_p_value(score, scores)
    return p, reasons, summary


def decide(reasons: list[str], p_value: float | None, alpha: float) -> str:
    """The verdict from reason codes and a p-value (the module docstring's order)."""
    kinds = {REASONS[r][0] for r in reasons}
    if INPUT in kinds or CALIBRATION in kinds or p_value is None:
        return INCONCLUSIVE
    if p_value < alpha:
        return FAKE
    return INCONCLUSIVE if EVIDENCE in kinds else REAL


def assess_clip(
    result: "ClipResult",
    options: "ScoreOptions",
    audio: AudioAnalysis | None,
    settings: VerdictSettings = VerdictSettings(),
    reference: conformal.ReferenceSet | None = None,
    record: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    drift_settings: DriftSettings = DriftSettings(),
    face: FaceStats | None = None,
    media: MediaChecks | None = None,
) -> dict[str, Any]:
    """The verdict fields of one scored clip (the paper's ``score`` is neither read nor changed
    beyond its offset and value).

    Args:
        result: the scorer's :class:`.pipeline.ClipResult` (``sims``, ``score``, ``best_offset``).
        options: the scorer's :class:`.pipeline.ScoreOptions` (``max_offset``, ``fps``,
            ``max_seconds``).
        audio: :func:`.speech.analyse_wav` of the clip's wav (None: no audio).
        settings: verdict thresholds.
        reference: real-only reference set (None: ``uncalibrated``).
        record: the clip's record so far (the reference's group field is read from it).
        provenance: the clip's provenance (compared with the reference's model keys).
        drift_settings: offset-drift settings.
        face, media: optional face-track and stream checks.

    Returns:
        ``{"verdict", "reasons", "p_value", "alpha", "reference", "score_speech",
        "best_offset_speech", "curve_speech", "speech_frames", "speech_seconds",
        "speech_fraction", "audio_stats", "drift"}`` (``audio_stats`` None without audio;
        ``face`` added when given).
    """
    sims, fps, max_offset = result.sims, options.fps, options.max_offset
    n_frames = int(sims.shape[0])
    speech = None if audio is None else audio.speech
    gated = gated_score(sims, speech, fps) if speech is not None else None
    field_name = reference.score_field if reference is not None else "score_speech"
    if field_name == "score_speech":
        judged = (None, None) if gated is None else (gated.score_speech, gated.best_offset_speech)
    else:
        judged = (result.score, result.best_offset)
    drift = offset_drift(sims, fps, drift_settings, speech)
    reasons = input_reasons(n_frames, fps, max_offset, judged[1], audio, gated, settings, face, media)
    p_value, calib_reasons, ref_summary = calibration(judged[0], reference, record or {}, provenance,
                                                      settings.alpha)
    reasons += calib_reasons
    if drift.drifting:
        reasons.append("offset_drift")
    if (audio is not None and options.max_seconds is not None
            and audio.full_duration_s > options.max_seconds + 1.0 / fps):
        reasons.append("duration_capped")
    out = {
        "verdict": decide(reasons, p_value, settings.alpha),
        "reasons": reasons,
        "p_value": p_value,
        "alpha": settings.alpha,
        "reference": ref_summary,
        **(gated.as_record() if gated is not None else
           {"score_speech": None, "best_offset_speech": None, "curve_speech": None,
            "speech_frames": 0, "speech_seconds": 0.0, "speech_fraction": 0.0}),
        "audio_stats": None if audio is None else asdict(audio.stats),
        "drift": drift.as_record(),
    }
    if face is not None:
        out["face"] = asdict(face)
    return out


def unscored_verdict(reasons: list[str]) -> dict[str, Any]:
    """Verdict fields of an input that could not be scored for a known input reason (e.g. the
    preprocessing found no face or no audio: :data:`PREPARE_STATUS_REASONS`): ``inconclusive``
    with those reasons, every other verdict field None."""
    unknown = [r for r in reasons if r not in REASONS]
    if unknown or not reasons:
        raise ValueError(f"unknown or missing reason codes: {unknown or reasons}")
    return {**dict.fromkeys(VERDICT_FIELDS), "verdict": INCONCLUSIVE, "reasons": list(reasons)}


# Preprocessing statuses (sf-prepare) that are input reasons rather than failures.
PREPARE_STATUS_REASONS = {"no_face": "no_face", "no_audio": "no_audio", "too_short": "clip_too_short"}
VERDICT_FIELDS = ("verdict", "reasons", "p_value", "alpha", "reference", "score_speech", "best_offset_speech",
                  "curve_speech", "speech_frames", "speech_seconds", "speech_fraction", "audio_stats", "drift")


def summary_lines(record: Mapping[str, Any]) -> list[str]:
    """An analyst's reading of one record: verdict, p-value, scores, reasons (with their
    meaning), speech, drift segments and what produced it."""
    lines = [f"verdict: {record.get('verdict')}"]
    p = record.get("p_value")
    ref = record.get("reference") or {}
    if p is not None:
        lines.append(f"p-value: {p:.4g} (alpha {record.get('alpha'):g}; against {ref.get('n')} real clips, "
                     f"group {ref.get('group')!r}, field {ref.get('score_field')})")
    fps = record.get("fps") or float(FPS)
    if record.get("score") is None:
        lines.append("score (paper's rule): not computed (the input could not be scored)")
    else:
        lines.append(f"score (paper's rule): {record['score']:.4f} at offset {record['best_offset']:+d} frames "
                     f"({record['best_offset'] * 1000 / fps:+.0f} ms; > 0: audio lags video)")
    if record.get("score_speech") is not None:
        lines.append(f"score over speech only: {record['score_speech']:.4f} at offset "
                     f"{record['best_offset_speech']:+d} frames")
    if record.get("speech_seconds") is not None and record.get("speech_fraction") is not None:
        lines.append(f"speech: {record['speech_seconds']:.2f} s ({record['speech_fraction']:.0%} of the clip)")
    for code in record.get("reasons") or ():
        kind, meaning = REASONS.get(code, ("?", "unknown code"))
        lines.append(f"reason: {code} ({kind}): {meaning}")
    drift = record.get("drift") or {}
    for seg in drift.get("segments") or ():
        lines.append(f"offset segment {seg['start_s']:.2f}-{seg['end_s']:.2f} s: {seg['offset']:+d} frames "
                     f"({seg['offset_ms']:+.0f} ms)")
    prov = record.get("provenance") or {}
    if prov:
        code = prov.get("code_version") or {}
        dirty = " (work tree with uncommitted changes)" if code.get("git_dirty") else ""
        lines.append(f"input sha256 {prov.get('input_sha256')}, checkpoint sha256 {prov.get('checkpoint_sha256')}, "
                     f"code {code.get('version')} {code.get('git_commit') or ''}".rstrip() + dirty)
    return lines


def reason_table(records: list[Mapping[str, Any]]) -> str:
    """Markdown table: per category, how many records are real / fake / inconclusive and how
    often each reason code occurs (for the report)."""
    by_category: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("verdict") is not None:
            by_category.setdefault(str(r.get("category")), []).append(r)
    codes = [c for c in REASONS if any(c in (r.get("reasons") or ()) for r in records)]
    header = ["category", "n", REAL, FAKE, INCONCLUSIVE, *codes]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for category, group in sorted(by_category.items()):
        counts = [sum(r["verdict"] == v for r in group) for v in (REAL, FAKE, INCONCLUSIVE)]
        reasons = [sum(c in (r.get("reasons") or ()) for r in group) for c in codes]
        rows.append("| " + " | ".join(map(str, [category, len(group), *counts, *reasons])) + " |")
    return "\n".join(rows) + "\n"
