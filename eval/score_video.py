"""Score one video: verdict with reasons, score, audio-video offset, per-window scores, JSON + PNG.

Examples::

    # a raw video (any size/fps, with audio): faces are tracked and mouths cropped first
    sf-score-video interview.mp4 --checkpoint large_vox_iter5.pt --reference reference.json --html

    # an already prepared 96x96 mouth ROI at 25 fps with its wav
    sf-score-video roi/clip.mp4 --audio roi/clip.wav --checkpoint X

Input kind (``--input-kind auto``): a video whose frames are at most 128x128 pixels is taken
as a mouth ROI, and its wav is ``--audio`` or the one beside it (same name, ``.wav``; without
it the video is refused with "no audio for this ROI", not preprocessed as a raw video); a
larger one is a raw video and goes through :mod:`sf_fairseq.preprocess.prepare_engine` (one ROI per
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sf_fairseq import resume
from sf_fairseq._logging import LOG_FORMAT, command_logging

from .batch_engine import add_transcribe_arguments, load_transcriber
from .metrics import Calibration
from .pipeline import Scorer, add_scorer_arguments, load_scorer_from_arguments, pick_device
from .verdict import VerdictConfig, add_verdict_arguments, summary_lines, verdict_config_from_arguments
from .video_engine import (
    ScoreVideoError,
    plot_result,
    score_video_tracks,
    summary_markdown,
    transcript_lines,
    write_pack,
)

logger = logging.getLogger(__name__)


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
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
