"""Score one video: verdict with reasons, score, audio-video offset, per-window scores, JSON + PNG.

Examples::

    # a raw video (any size/fps, with audio): faces are tracked and mouths cropped first
    sf-score-video interview.mp4 --checkpoint large_vox_iter5.pt --reference reference.json --html

    # an already prepared 96x96 mouth ROI at 25 fps with its wav
    sf-score-video roi/clip.mp4 --audio roi/clip.wav --checkpoint X

Input kind (``--input-kind auto``): a video whose frames are at most 128x128 pixels is taken
as a mouth ROI, and its wav is ``--audio`` or the one beside it (same name, ``.wav``; without
it the video is refused with "no audio for this ROI", not preprocessed as a raw video); a
larger one is a raw video and goes through :mod:`sf_fairseq.preprocess.prepare` (one ROI per
face track, most-seen face first; every track is scored, the first gives the verdict). A ROI
clip too short to score or whose video and audio durations disagree is refused
(:func:`.encode.check_clip_lengths`). A raw video whose preprocessing finds no face, no audio
or too few frames is not scored: its record says ``inconclusive`` with reason ``no_face``,
``no_audio`` or ``clip_too_short``; a truncated raw video (a partial download) is scored, with
reason ``truncated_input``.

The score is SpeechForensics' (see :mod:`.score`): higher = more likely real; it is recorded
exactly as the paper computes it. Beside it every face track's record gets the verdict fields
of :mod:`.verdict`: ``verdict`` (``real``, ``fake`` or ``inconclusive``), ``reasons`` (codes),
``score_speech`` (the same offset search over speech frames only), ``speech_seconds``,
``speech_fraction``, ``p_value`` (against ``--reference``, a real-only reference set from
``sf-reference-set``; without one the verdict is ``inconclusive``, reason ``uncalibrated``),
``drift`` (per-window offsets) and ``provenance`` (input, checkpoint and code hashes and
versions, every setting: ``sf-verify <name>.score.json`` re-scores from it). The thresholds
are options (``--alpha``, ``--min-speech-seconds``, ...). ``--calibration`` (or
``--threshold``) only adds ``threshold_verdict``, the older fake-below-a-threshold call on
the paper's score.

Writes ``<out>/<name>.score.json`` (the first track's verdict fields at the top, ``tracks``
with one record per face track, settings), ``<out>/<name>.score.png`` (S(k) curve and
per-window scores; not for an unscored input), ``<out>/<name>.score.md`` (a readable summary)
and, with ``--html [PATH]``, the evidence pack (:mod:`.evidence`, one self-contained HTML
file, one section per face track; default ``<out>/<name>.evidence.html``), ``<name>`` being
the video's file name without its extension. The printed output is the analyst's reading of
the first track (:func:`.verdict.summary_lines`). The JSON records a ``fingerprint`` of the
settings (checkpoint hash, layer, offsets, cap, precision, windows, threshold, verdict, drift
and voice-activity settings, reference set hash, input files): a rerun rescores and replaces
the outputs, saying in the log which settings changed. Outputs of *another* input with the
same name (``a.mp4`` then ``a.mkv``, or two folders' ``001.mp4``) are not replaced unless
``--overwrite`` is given.

Exit status: 0 when a record was written, whatever its verdict (an input that could not be
scored for a known input reason, e.g. no face, is a record with verdict ``inconclusive``);
2 when nothing was written (missing or unreadable input, failed preprocessing, ROI without its
wav; the reason on stderr).

With ``--transcribe CKPT`` (a fine-tuned AVSR seq2seq checkpoint), each face track is also
decoded from its lips alone and from its audio alone; the record (top level: the first track's)
gets ``transcripts`` = ``{lips, audio, word_disagreement, char_disagreement, model, error_type,
error}``, shown in the summary and the Markdown. The disagreement (edit distance / length of the
longer transcript, 0 = same, 1 = nothing in common) is a second, interpretable inconsistency
signal: a dubbed clip reads one sentence on the lips and another in the audio. A failed
transcription is recorded there and does not stop the score.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pickle
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import cv2

from sf_fairseq import resume

from . import score as sc
from .encode import load_clip
from .evidence import TrackEvidence, write_evidence_pack
from .metrics import Calibration
from .pipeline import (
    ClipResult,
    ScoreOptions,
    Scorer,
    add_scorer_arguments,
    load_scorer_from_arguments,
    pick_device,
)
from .provenance import clip_provenance
from .batch_engine import add_transcribe_arguments, load_transcriber, transcribe_batch
from .speech import analyse_wav
from .transcribe import Transcriber
from .verdict import (
    PREPARE_STATUS_REASONS,
    MediaChecks,
    VerdictConfig,
    add_verdict_arguments,
    assess_clip,
    face_stats_from_prepare,
    media_checks_from_prepare,
    summary_lines,
    unscored_verdict,
    verdict_config_from_arguments,
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
        The preprocessing status record (:mod:`sf_fairseq.preprocess.prepare`; paths relative
        to ``work_dir``): status ``ok`` or ``truncated`` (``tracks`` most-seen face first,
        ``audio``, ``landmarks``), or one of :data:`.verdict.PREPARE_STATUS_REASONS`
        (``no_face``, ``no_audio``, ``too_short``: an input the verdict calls inconclusive).

    Raises:
        ScoreVideoError: any other status (unreadable input, unexpected failure).
    """
    from sf_fairseq.preprocess.prepare import InputItem, VideoPreprocessor

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
        lines.append(f"- threshold verdict (score below {result['threshold']:.4f}: fake): {result['threshold_verdict']}")
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


def output_fingerprint(args: argparse.Namespace, scorer: Scorer, result: dict[str, Any],
                       threshold: float | None, verdict: VerdictConfig) -> dict[str, Any]:
    """Everything that changes ``<name>.score.*``: recorded in the JSON, compared on reruns
    (with the verdict thresholds, drift and voice-activity settings and the reference set's
    hash)."""
    roi_audio = result["tracks"][0]["audio"] if result["input_kind"] == "roi" else None
    return resume.normalise({
        "checkpoint_sha256": resume.file_sha256(args.checkpoint),
        "layer": args.layer,
        "max_offset": scorer.options.max_offset,
        "max_seconds": scorer.options.max_seconds,
        "precision": scorer.encoder.precision,
        "input_settings": asdict(scorer.settings),
        "input_kind": result["input_kind"],
        "input": resume.file_identity(args.video),
        "audio": None if roi_audio is None else resume.file_identity(roi_audio),
        "windows": {"window_s": args.window, "hop_s": args.hop, "smooth_frames": args.smooth_frames},
        "threshold": threshold,
        **verdict.provenance(),
        "group": args.group,
        "speech_settings": asdict(verdict.speech),
        "transcribe": None if not args.transcribe else {
            "checkpoint_sha256": resume.file_sha256(args.transcribe), "beam": args.beam, "lenpen": args.lenpen},
    })


def previous_output(json_path: Path, video: str, overwrite: bool) -> dict[str, Any] | None:
    """The record already at ``json_path`` (None if there is none or it is unreadable).

    Raises:
        ScoreVideoError: it holds the score of another input with the same name, and not
            ``overwrite``.
    """
    try:
        old = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        logger.warning("%s is unreadable (%s); replacing it", json_path, err)
        return None
    if not isinstance(old, dict):
        logger.warning("%s is not a score record; replacing it", json_path)
        return None
    if old.get("input") != os.path.abspath(video) and not overwrite:
        raise ScoreVideoError(
            f"{json_path} holds the score of another input ({old.get('input')}) with the same name; "
            "use another --out, or --overwrite to replace it"
        )
    return old


def log_replacement(json_path: Path, old: dict[str, Any] | None, fingerprint: dict[str, Any]) -> None:
    """Say what a rerun replaces: outputs of other settings, of another input or of an older version."""
    if old is None:
        return
    if "fingerprint" not in old:
        logger.warning("%s: replacing an output without a settings record (older version)", json_path)
        return
    differing = resume.differing_keys(old["fingerprint"], fingerprint)
    if differing:
        logger.warning("%s was made with other settings (differing: %s); replacing it",
                       json_path, ", ".join(differing))
    else:
        logger.info("%s: same settings; replacing it with this run's", json_path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.score_video",
        description="Score one video with SpeechForensics' lip-speech agreement score "
        "(higher = more likely real) and give a verdict (real, fake or inconclusive) with reasons. "
        "Exit status: 0 when a record was written (whatever its verdict), 2 when the video could "
        "not be scored and nothing was written.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("video", help="raw video, or a mouth-ROI video (with --audio or a .wav beside it)")
    add_scorer_arguments(p, checkpoint_flag="--checkpoint")
    p.add_argument("--audio", help="16 kHz mono wav of a ROI video (default: <video>.wav)")
    p.add_argument("--input-kind", default="auto", choices=["auto", "roi", "raw"],
                   help="auto: ROI (with its wav) if frames <= 128 px, else raw")
    p.add_argument("--out", default=".", help="directory for <name>.score.json, .png and .md")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs in --out that another input with the same name left there")
    p.add_argument("--work-dir", help="keep the preprocessing output of a raw video here "
                   "(default: a temporary directory, removed afterwards)")
    p.add_argument("--html", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the evidence pack, one self-contained HTML file (default PATH: "
                   "<out>/<name>.evidence.html; give --html after the video, or as --html=PATH)")
    threshold = p.add_mutually_exclusive_group()
    threshold.add_argument("--calibration", help="calibration JSON from metrics_cli --calibrate-fpr: "
                           "adds threshold_verdict (the verdict itself comes from --reference)")
    threshold.add_argument("--threshold", type=float,
                           help="score threshold for threshold_verdict (fake when below)")
    p.add_argument("--window", type=float, default=2.0, help="per-window score window (s)")
    p.add_argument("--hop", type=float, default=1.0, help="per-window score hop (s)")
    p.add_argument("--smooth-frames", type=int, default=25,
                   help="neighbourhood (frames) of the dynamic-offset variant")
    add_transcribe_arguments(p)
    add_verdict_arguments(p)
    p.add_argument("--group", help="the group of this video in a grouped --reference set (its --group-by "
                   "field's value, e.g. a language); without it a grouped set gives reason "
                   "reference_group_missing")
    return p


def write_pack(path: Path, scored: ScoredVideo, verdict: VerdictConfig, title: str) -> None:
    """The evidence pack of a scored video, with the reference distribution when one is given."""
    reference = verdict.reference
    scores = reference.scores_for(scored.tracks[0].record) if reference is not None else None
    write_evidence_pack(path, scored.tracks, title=title, reference=scores,
                        reference_field=reference.score_field if reference is not None else "score")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # force: importing fairseq leaves a DEBUG root handler behind (matplotlib floods it).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    out = Path(args.out)
    name = Path(args.video).stem
    json_path, png_path, md_path = (out / f"{name}.score.{ext}" for ext in ("json", "png", "md"))
    html_path = None if args.html is None else Path(args.html or out / f"{name}.evidence.html")
    resume.remove_stale_temporaries(out, recursive=False)  # left by a killed run
    try:  # (a missing video is reported by score_video, not as a name clash)
        previous = previous_output(json_path, args.video, args.overwrite) if os.path.isfile(args.video) else None
    except ScoreVideoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = pick_device(args.cpu)
    try:
        calibration = Calibration.load(args.calibration) if args.calibration else None
        verdict = verdict_config_from_arguments(args)
        scorer = load_scorer_from_arguments(args, args.checkpoint, device)
        transcriber, transcriber_name = load_transcriber(args, device)
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # missing/unsafe checkpoint, bad calibration
        raise SystemExit(f"error: {err}") from err
    threshold = calibration.threshold if calibration else args.threshold
    options = {"window_s": args.window, "hop_s": args.hop, "smooth_frames": args.smooth_frames,
               "transcriber": transcriber, "transcriber_name": transcriber_name or "transcriber",
               "checkpoint": args.checkpoint, "verdict": verdict, "group": args.group}
    try:
        with contextlib.ExitStack() as stack:
            work_dir = args.work_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="sf_score_"))
            scored = score_video_tracks(scorer, args.video, args.audio, args.input_kind, work_dir, **options)
            if html_path is not None:  # (the pack reads the ROI videos, gone with a temporary work dir)
                write_pack(html_path, scored, verdict, Path(args.video).name)
    except ScoreVideoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = scored.result
    main_track = result["tracks"][0]
    scored_main = main_track["score"] is not None
    result.update(
        checkpoint=os.path.abspath(args.checkpoint),
        layer=args.layer,
        threshold=threshold,
        calibration=None if calibration is None else {"path": os.path.abspath(args.calibration),
                                                      "target_fpr": calibration.target_fpr,
                                                      "provenance": calibration.provenance},
        threshold_verdict=None if threshold is None or not scored_main else (
            "fake" if main_track["score"] < threshold else "real"),
    )
    if transcriber is not None:
        result["transcripts"] = main_track.get("transcripts")
        result["transcribe"] = {"checkpoint": transcriber_name, "beam": args.beam, "lenpen": args.lenpen}
    result["fingerprint"] = output_fingerprint(args, scorer, result, threshold, verdict)
    log_replacement(json_path, previous, result["fingerprint"])
    resume.atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
    written = [json_path]
    if scored_main:
        with resume.atomic_path(png_path) as tmp:
            plot_result(main_track, tmp, threshold, f"{name} ({result['input_kind']})")
        written.append(png_path)
    else:
        png_path.unlink(missing_ok=True)  # a previous run's curves are not this record's
    resume.atomic_write_text(md_path, summary_markdown(result, name, png_path.name if scored_main else None))
    written.append(md_path)
    print("\n".join(summary_lines(main_track)))
    if threshold is not None:
        print(f"threshold verdict (score below {threshold:.4f}: fake): {result['threshold_verdict']}")
    if main_track.get("transcripts") is not None:
        print("\n".join(transcript_lines(main_track["transcripts"])))
    for track in result["tracks"][1:]:
        print(f"other face {track['track']}: verdict {track['verdict']}, score {track['score']:.4f}, "
              f"offset {track['best_offset_ms']:+.0f} ms")
    if html_path is not None:
        written.append(html_path)
    print(f"wrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
