"""Score one video: verdict, score, audio-video offset, per-window scores, JSON + PNG.

Examples::

    # a raw video (any size/fps, with audio): faces are tracked and mouths cropped first
    python -m sf_fairseq.eval.score_video interview.mp4 --checkpoint large_vox_iter5.pt \\
        --calibration threshold.json

    # an already prepared 96x96 mouth ROI at 25 fps with its wav
    python -m sf_fairseq.eval.score_video roi/clip.mp4 --audio roi/clip.wav --checkpoint X

Input kind (``--input-kind auto``): a video whose frames are at most 128x128 pixels is taken
as a mouth ROI, and its wav is ``--audio`` or the one beside it (same name, ``.wav``; without
it the video is refused with "no audio for this ROI", not preprocessed as a raw video); a
larger one is a raw video and goes through :mod:`sf_fairseq.preprocess.prepare` (one ROI per
face track, most-seen face first; every track is scored, the first gives the verdict). A clip
too short to score or whose video and audio durations disagree is refused
(:func:`.encode.check_clip_lengths`).

The score is SpeechForensics' (see :mod:`.score`): higher = more likely real. It has no
absolute meaning until a threshold is set on real videos (``metrics_cli --calibrate-fpr``);
pass it with ``--calibration`` (or ``--threshold``) to get a verdict. Writes
``<out>/<name>.score.json`` (score, offset, S(k) curve, windows, dynamic-offset score, verdict,
settings), ``<out>/<name>.score.png`` (S(k) curve and per-window scores) and
``<out>/<name>.score.md`` (a readable summary), ``<name>`` being the video's file name without
its extension. The JSON records a ``fingerprint`` of the settings (checkpoint hash, layer,
offsets, cap, precision, windows, threshold, input files): a rerun rescores and replaces the
outputs, saying in the log which settings changed. Outputs of *another* input with the same
name (``a.mp4`` then ``a.mkv``, or two folders' ``001.mp4``) are not replaced unless
``--overwrite`` is given. Exit status: 0 when scored, 2 when the video could not be scored
(the reason on stderr).

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
import json
import logging
import os
import pickle
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2

from sf_fairseq import resume

from . import score as sc
from .encode import load_clip
from .metrics import Calibration
from .pipeline import ClipResult, Scorer, ScoreOptions, add_scorer_arguments, load_scorer_from_arguments, pick_device
from .score_batch import add_transcribe_arguments, load_transcriber, transcribe_batch
from .transcribe import Transcriber

logger = logging.getLogger(__name__)

ROI_MAX_SIDE = 128


class ScoreVideoError(RuntimeError):
    """The video cannot be scored (the message says why)."""


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


def prepare_raw(video: str, work_dir: str) -> list[tuple[str, str, str]]:
    """Mouth ROI(s) and wav of a raw video via the preprocessing stage.

    Returns:
        ``[(track id, roi video, wav)]``, most-seen face first.
    """
    from sf_fairseq.preprocess.prepare import InputItem, VideoPreprocessor

    item = InputItem(id=Path(video).stem, path=os.path.abspath(video))
    record = VideoPreprocessor().process(item, work_dir)
    if record["status"] != "ok":
        raise ScoreVideoError(f"{video}: preprocessing failed ({record['status']}): {record.get('reason')}")
    wav = os.path.join(work_dir, record["audio"])
    return [(t["id"], os.path.join(work_dir, t["video"]), wav) for t in record["tracks"]]


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


def score_video(
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
) -> dict[str, Any]:
    """Score every face track of ``video``; returns ``{"input_kind", "tracks": [record]}``.
    With a ``transcriber``, each track record also gets ``transcripts`` (see the module docstring).

    Raises:
        ScoreVideoError: missing input, failed preprocessing, unreadable ROI or wav.
    """
    if os.path.isdir(video):
        raise ScoreVideoError(f"video path is not a file (a directory): {video!r}")
    if not os.path.exists(video):
        raise ScoreVideoError(f"video file not found: {video!r}")
    kind = input_kind
    if kind == "auto":
        kind = "roi" if roi_sized(video) else "raw"
    if kind == "roi":
        wav = roi_wav(video, audio)
        if not os.path.exists(wav):
            raise ScoreVideoError(
                f"no audio for this ROI: expected {wav!r} (give --audio; --input-kind raw if this "
                "is a small full-frame video)"
            )
        clips = [(Path(video).stem, video, wav)]
    else:
        if work_dir is None:
            raise ScoreVideoError("a raw video needs a work directory for its ROI")
        clips = prepare_raw(video, work_dir)
    try:
        loaded = [
            load_clip(v, a, scorer.settings, scorer.options.max_seconds, scorer.options.fps)
            for _, v, a in clips
        ]
    except (OSError, ValueError) as err:
        raise ScoreVideoError(str(err)) from err
    results = scorer.score_clips(loaded)
    tracks = []
    for (track_id, v, a), result in zip(clips, results):
        tracks.append({"track": track_id, "roi_video": v, "audio": a,
                       **analyse(result, scorer.options, window_s, hop_s, smooth_frames)})
    if transcriber is not None:
        paths = [(v, a) for _, v, a in clips]
        for track, transcripts in zip(tracks, transcribe_batch(transcriber, transcriber_name, loaded, paths, scorer)):
            track["transcripts"] = transcripts
    return {"input": os.path.abspath(video), "input_kind": kind, "tracks": tracks}


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


def summary_markdown(result: dict[str, Any], name: str, png_name: str) -> str:
    """``<name>.score.md``: verdict, score, offset and (when present) the transcripts of each track."""
    lines = [f"# {name}", "", f"- input: `{result['input']}` ({result['input_kind']})",
             f"- verdict: {result.get('verdict') or 'n/a (no threshold)'}",
             f"- score: {result['score']:.4f}" + ("" if result.get("threshold") is None
                                                   else f" (threshold {result['threshold']:.4f})"),
             f"- offset: {result['best_offset_ms']:+.0f} ms (> 0: audio lags video)"]
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
    lines += ["", f"![score curves]({png_name})"]
    return "\n".join(lines) + "\n"


def output_fingerprint(args: argparse.Namespace, scorer: Scorer, result: dict[str, Any],
                       threshold: float | None) -> dict[str, Any]:
    """Everything that changes ``<name>.score.*``: recorded in the JSON, compared on reruns."""
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
        "(higher = more likely real).",
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
    verdict = p.add_mutually_exclusive_group()
    verdict.add_argument("--calibration", help="calibration JSON from metrics_cli --calibrate-fpr")
    verdict.add_argument("--threshold", type=float, help="score threshold (fake when below)")
    p.add_argument("--window", type=float, default=2.0, help="per-window score window (s)")
    p.add_argument("--hop", type=float, default=1.0, help="per-window score hop (s)")
    p.add_argument("--smooth-frames", type=int, default=25,
                   help="neighbourhood (frames) of the dynamic-offset variant")
    add_transcribe_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # force: importing fairseq leaves a DEBUG root handler behind (matplotlib floods it).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    out = Path(args.out)
    name = Path(args.video).stem
    json_path, png_path, md_path = (out / f"{name}.score.{ext}" for ext in ("json", "png", "md"))
    resume.remove_stale_temporaries(out, recursive=False)  # left by a killed run
    try:  # (a missing video is reported by score_video, not as a name clash)
        previous = previous_output(json_path, args.video, args.overwrite) if os.path.isfile(args.video) else None
    except ScoreVideoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = pick_device(args.cpu)
    try:
        calibration = Calibration.load(args.calibration) if args.calibration else None
        scorer = load_scorer_from_arguments(args, args.checkpoint, device)
        transcriber, transcriber_name = load_transcriber(args, device)
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # missing/unsafe checkpoint, bad calibration
        raise SystemExit(f"error: {err}") from err
    threshold = calibration.threshold if calibration else args.threshold
    transcribe = {"transcriber": transcriber, "transcriber_name": transcriber_name or "transcriber"}
    try:
        if args.work_dir:
            result = score_video(scorer, args.video, args.audio, args.input_kind, args.work_dir,
                                 args.window, args.hop, args.smooth_frames, **transcribe)
        else:
            with tempfile.TemporaryDirectory(prefix="sf_score_") as tmp:
                result = score_video(scorer, args.video, args.audio, args.input_kind, tmp,
                                     args.window, args.hop, args.smooth_frames, **transcribe)
    except ScoreVideoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    main_track = result["tracks"][0]
    verdict = None if threshold is None else ("fake" if main_track["score"] < threshold else "real")
    result.update(
        checkpoint=os.path.abspath(args.checkpoint),
        layer=args.layer,
        threshold=threshold,
        calibration=None if calibration is None else {"path": os.path.abspath(args.calibration),
                                                      "target_fpr": calibration.target_fpr,
                                                      "provenance": calibration.provenance},
        verdict=verdict,
        score=main_track["score"],
        best_offset_ms=main_track["best_offset_ms"],
    )
    if transcriber is not None:
        result["transcripts"] = main_track["transcripts"]
        result["transcribe"] = {"checkpoint": transcriber_name, "beam": args.beam, "lenpen": args.lenpen}
    result["fingerprint"] = output_fingerprint(args, scorer, result, threshold)
    log_replacement(json_path, previous, result["fingerprint"])
    resume.atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
    with resume.atomic_path(png_path) as tmp:
        plot_result(main_track, tmp, threshold, f"{name} ({result['input_kind']})")
    resume.atomic_write_text(md_path, summary_markdown(result, name, png_path.name))
    verdict_text = verdict or "n/a (no --calibration or --threshold given)"
    print(f"verdict: {verdict_text}")
    print(f"score: {main_track['score']:.4f}" + ("" if threshold is None else f" (threshold {threshold:.4f})"))
    print(f"offset: {main_track['best_offset']:+d} frames ({main_track['best_offset_ms']:+.0f} ms; > 0: audio lags video)")
    if transcriber is not None:
        print("\n".join(transcript_lines(main_track["transcripts"])))
    for track in result["tracks"][1:]:
        print(f"other face {track['track']}: score {track['score']:.4f}, offset {track['best_offset_ms']:+.0f} ms")
    print(f"wrote {json_path}, {png_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
