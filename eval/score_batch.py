"""Score many clips with a checkpoint, fairseq-generate style, streaming records to disk.

Input is either a manifest split (``DATA`` directory + ``--gen-subset``, see
:func:`.lists.read_manifest_split`) or a list file (``--list``: SpeechForensics
``test_list.txt`` or CSV, paths relative to ``--data-root``). Each clip is a mouth-ROI video and
its 16 kHz mono wav. Example::

    python -m sf_fairseq.eval.score_batch --path large_vox_iter5.pt \\
        --list FakeAVCeleb/test_list.txt --data-root /data/FakeAVCeleb_mouths \\
        --results-path out/favc --batch-size 16 --bf16 --report

Output, under ``--results-path``:

* ``scores.jsonl`` (``scores.<shard>-of-<n>.jsonl`` when sharded): one record per list item
  (see :mod:`.results`), appended and flushed as soon as the item is scored or fails, in the
  order the clips are scored (shortest first), not list order. A missing or unreadable file
  gives a ``failed`` record with the error, and the run goes on.
* ``fingerprint.json`` (``fingerprint.<shard>-of-<n>.json``): everything that changes a record
  (checkpoint content hash, layer, max offset, max seconds, precision, input transform,
  transcription model and beam options, calibration, verdict thresholds, offset-drift and
  voice-activity settings, the reference set's content hash, and the input: list or manifest
  content hash, data root, category rule). A rerun with the same fingerprint skips items already scored
  successfully whose video and wav are unchanged (same size and modification time) and retries
  the others; a rerun with other settings is refused, naming the differing settings, unless
  ``--overwrite`` is given (that shard's old records are then discarded, never mixed).
* ``run.json``: the checkpoint, layer, input and score settings of the run (human-readable;
  only written once the settings are accepted).
* with ``--report`` (unsharded runs): ``report/`` as written by :mod:`.metrics_cli`.

One run at a time works on a shard's output (a lock beside it; a second run is refused with a
message naming the first); different shards of one directory run in parallel. Temporary files
left by killed runs are removed on the next run. Ctrl-C and SIGTERM stop the run cleanly (exit
status 130 and 143, every record written so far kept); the loader processes end with the run
even when it is killed with SIGKILL.

Clips are scored in batches of similar length (:class:`sf_fairseq.data.batching.BatchLimits`: at most
``--batch-size`` clips, ``--max-frames`` padded frames and ``--max-padding`` padding per model
call), the lengths read from the wav headers; the scores equal those of ``--batch-size 1``.

Every record carries the verdict of :mod:`.verdict` beside the paper's ``score`` (unchanged):
``verdict`` (``real``, ``fake`` or ``inconclusive``), ``reasons`` (codes), ``score_speech``
(the same offset search over speech frames only; Silero VAD runs in the loader processes),
``speech_seconds``, ``speech_fraction``, ``p_value`` (against ``--reference``, a real-only
reference set from ``sf-reference-set``; without one every verdict is ``inconclusive``, reason
``uncalibrated``), ``drift`` and ``provenance`` (input, scored files, checkpoint hashes, code
and library versions, every setting; ``sf-verify scores.jsonl --id ID`` re-scores from it).
Items of an ``sf-prepare`` output folder also get the checks its status records allow (source
resolution, truncation, face-track coverage, size and landmark jitter), and an item prepare
found no face or audio in is ``inconclusive`` with that reason. The thresholds are options
(``--alpha``, ``--min-speech-seconds``, ``--drift-*``, ``--vad-*``). ``--calibration`` only adds
``threshold_verdict``, the older fake-below-a-threshold call on the paper's score.

With ``--transcribe CKPT`` (a fine-tuned AVSR seq2seq checkpoint), every scored clip is also
decoded from its video stream alone and from its audio stream alone, a batch at a time, and its
record gets a ``transcripts`` field (lips, audio, their word/character disagreement, the model;
see :mod:`.results`). A clip that cannot be transcribed keeps its score and records the error
in that field; a rerun transcribes the clips whose records lack transcripts from this model.
The report then adds the mean word disagreement per category and its AUC as a detector.

A summary is printed at the end (errors and progress go to stderr); the exit status is 0 when
every item is scored, 1 otherwise. Memory stays bounded: clips are loaded one at a time by
``--num-workers`` loader processes and records go straight to disk.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import functools
import logging
import os
import pickle
import signal
import threading
import time
from argparse import Namespace
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import soundfile
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sf_fairseq import resume
from sf_fairseq.data.batching import BatchLimits, length_order

from . import lists
from .encode import SAMPLE_RATE, ClipInputs, InputSettings, load_clip
from .jobs import error_text, run_interruptible
from .metrics import Calibration
from .pipeline import ClipResult, ScoreOptions, Scorer, add_scorer_arguments, load_scorer_from_arguments, pick_device
from .provenance import clip_provenance
from .report import write_report
from .results import (
    FAILED, OK, PrepareStatus, ResultWriter, has_transcripts, input_stamps, iter_records, latest_records,
    prepare_status, transcribe_records, transcript_failure,
)
from .speech import AudioAnalysis, SpeechSettings, analyse_wav
from .transcribe import DecodeSettings, Transcriber
from .verdict import (
    PREPARE_STATUS_REASONS, VERDICT_FIELDS, FaceStats, MediaChecks, VerdictConfig, add_verdict_arguments,
    assess_clip, face_stats_from_prepare, media_checks_from_prepare, unscored_verdict, verdict_config_from_arguments,
)

logger = logging.getLogger(__name__)


@dataclass
class LoadedClip:
    """One item as a loader process hands it over: the model inputs and what the verdict
    checks besides the score (all picklable).

    Attributes:
        inputs: the streams to score.
        audio: the wav's voice activity and level statistics (:func:`.speech.analyse_wav`).
        face: face-track statistics from the prepare landmarks (None: not prepared by
            ``sf-prepare``, or no landmarks file).
    """

    inputs: ClipInputs
    audio: AudioAnalysis
    face: FaceStats | None = None


def clip_length(clip: ClipInputs) -> int:
    """Frames of a clip's longer stream (what a model batch pads to)."""
    return max(clip.video.shape[0], clip.audio.shape[0])


def prepared_face(status: PrepareStatus | None) -> FaceStats | None:
    """Face statistics of the track a ROI video holds, from its prepare landmarks (None without
    them; an unreadable landmarks file is logged, not an error: the check is then skipped)."""
    if status is None or not status.record.get("landmarks"):
        return None
    try:
        return face_stats_from_prepare(status.out_dir, status.record, status.track)
    except (OSError, ValueError, KeyError, IndexError) as err:
        logger.warning("%s: no face statistics (%s)", status.record.get("landmarks"), err)
        return None


class ClipDataset(Dataset):
    """Loads one item's clip and analyses its wav (voice activity); a failure is returned (not
    raised) so the batch goes on."""

    def __init__(self, items: Sequence[lists.EvalItem], settings: InputSettings, options: ScoreOptions,
                 speech: SpeechSettings = SpeechSettings()):
        self.items = items
        self.settings = settings
        self.options = options
        self.speech = speech

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, LoadedClip | None, str | None, str | None]:
        item = self.items[index]
        try:
            clip = load_clip(item.video, item.audio, self.settings, self.options.max_seconds, self.options.fps)
            analysis = analyse_wav(item.audio, self.speech, self.options.max_seconds)
        except Exception as err:  # noqa: BLE001 - any bad file becomes a failed record
            return index, None, type(err).__name__, str(err)
        return index, LoadedClip(clip, analysis, prepared_face(prepare_status(item.video))), None, None


def _first(batch: list) -> Any:
    return batch[0]


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _end_with_parent(parent_pid: int, worker_id: int) -> None:
    """``worker_init_fn`` of the loader processes: they must not outlive the scoring process,
    however it ends (SIGKILL from the OOM killer or a scheduler gives it no chance to stop them).

    The kernel sends SIGKILL to the worker when its parent dies (``PR_SET_PDEATHSIG``, Linux); a
    thread watching the parent pid covers other systems and a parent that died before this ran.
    SIGTERM is ignored here: the scoring process handles it and stops its workers itself."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def item_record(item: lists.EvalItem) -> dict[str, Any]:
    return {"id": item.id, "video": item.video, "audio": item.audio, "label": item.label, "category": item.category}


def failed_record(item: lists.EvalItem, error_type: str, error: str, reasons: Sequence[str] = ()) -> dict[str, Any]:
    """The record of an item that could not be scored: no score, and verdict fields that are
    None, or ``inconclusive`` with ``reasons`` when the input is known to hold nothing to judge
    (e.g. prepare found no face: :func:`unscored_reasons`)."""
    return {
        **item_record(item),
        "status": FAILED,
        "score": None,
        "best_offset": None,
        "best_offset_ms": None,
        "n_frames": None,
        "curve": None,
        "error_type": error_type,
        "error": error,
        **(unscored_verdict(list(reasons)) if reasons else dict.fromkeys(VERDICT_FIELDS)),
    }


def unscored_reasons(status: PrepareStatus | None) -> list[str]:
    """Verdict reasons of an item prepare did not turn into a scorable clip (no face, no audio,
    too short), from its status record; empty otherwise."""
    reason = None if status is None else PREPARE_STATUS_REASONS.get(status.record.get("status"))
    return [] if reason is None else [reason]


def header_length(item: lists.EvalItem, options: ScoreOptions) -> int:
    """Cheap length estimate of a clip in feature frames, from its wav header (prepare writes
    the wav at the video's length), capped at ``max_seconds``; 0 when the wav cannot be read
    (the item then fails when loaded)."""
    max_frames = options.max_frames
    try:
        frames = int(soundfile.info(item.audio).frames * options.fps) // SAMPLE_RATE
    except (OSError, RuntimeError):  # soundfile's errors are RuntimeErrors
        return 0
    return frames if max_frames is None else min(frames, max_frames)


def model_batches(
    loaded: Iterator[tuple[int, Any, str | None, str | None]],
    batch_size: int,
    max_frames: int | None,
    max_padding: float | None = None,
    length: Callable[[Any], int] = clip_length,
) -> Iterator[tuple[list[tuple[int, Any]], list[tuple[int, str, str]]]]:
    """Group loaded clips, in the order they come, into model batches under
    :class:`sf_fairseq.data.batching.BatchLimits` (a clip's length, ``length(clip)``, is by default its
    longer stream); failures pass through at once."""
    limits = BatchLimits(batch_size, max_frames, max_padding)
    batch: list[tuple[int, Any]] = []
    lengths: list[int] = []
    for index, clip, error_type, error in loaded:
        if clip is None:
            yield [], [(index, error_type, error)]
            continue
        clip_frames = length(clip)
        if not limits.admits(lengths, clip_frames):
            yield batch, []
            batch, lengths = [], []
        batch.append((index, clip))
        lengths.append(clip_frames)
    if batch:
        yield batch, []


def score_or_each(scorer: Scorer, clips: Sequence[ClipInputs]) -> list[ClipResult | Exception]:
    """Results of one model call on ``clips``; if it fails (e.g. out of memory), of one call per
    clip, a clip that fails alone getting its exception instead of a result."""
    try:
        return scorer.score_clips(clips)
    except (RuntimeError, ValueError) as err:
        if len(clips) == 1:
            return [err]
        logger.warning("batch of %d failed (%s); scoring its clips one at a time", len(clips), err)
    results: list[ClipResult | Exception] = []
    for clip in clips:
        try:
            results.append(scorer.score_clips([clip])[0])
        except (RuntimeError, ValueError) as err:
            results.append(err)
    return results


def score_items(
    items: Sequence[lists.EvalItem],
    scorer: Scorer,
    writer: ResultWriter,
    batch_size: int = 8,
    max_frames: int | None = None,
    num_workers: int = 0,
    calibration: Calibration | None = None,
    progress: bool = True,
    transcriber: Transcriber | None = None,
    transcriber_name: str = "transcriber",
    max_padding: float | None = BatchLimits.max_padding,
    verdict: VerdictConfig = VerdictConfig(),
    checkpoint: str | os.PathLike | None = None,
) -> dict[str, int]:
    """Score every item not yet done in ``writer``; returns counts (``scored``, ``failed``,
    ``skipped``).

    An item is done when ``writer`` holds a successful record of it made from input files of
    the same size and modification time. Pending items are scored shortest first, in batches
    of similar length (see :func:`model_batches`). Every record gets the verdict fields of
    :mod:`.verdict` under ``verdict`` (thresholds, voice activity, drift, reference set) and,
    when ``checkpoint`` (the file the scorer was loaded from) is given, ``provenance``; with a
    ``calibration``, also ``threshold_verdict`` (fake below its threshold). With a
    ``transcriber``, each scored record also gets ``transcripts`` (named ``transcriber_name``),
    and items done without transcripts from it are done again."""
    stamps = {item.id: input_stamps(item.video, item.audio) for item in items}
    done = {item.id for item in items if writer.unchanged(item.id, stamps[item.id])}
    if transcriber is not None and writer.path.exists():
        latest = {r["id"]: r for r in iter_records(writer.path)}
        done = {i for i in done if has_transcripts(latest.get(i, {}), transcriber_name)}
    pending = [item for item in items if item.id not in done]
    counts = {"skipped": len(items) - len(pending), "scored": 0, "failed": 0}
    lengths = [header_length(item, scorer.options) for item in pending]
    pending = [pending[i] for i in length_order(lengths)]
    dataset = ClipDataset(pending, scorer.settings, scorer.options, verdict.speech)
    loader = DataLoader(dataset, batch_size=1, collate_fn=_first, num_workers=num_workers,
                        worker_init_fn=functools.partial(_end_with_parent, os.getpid()) if num_workers else None)
    bar = tqdm(total=len(pending), unit="clip", disable=not progress)
    settings_provenance = verdict.provenance()  # (hashes the reference set once)

    transcripts: dict[int, dict[str, Any]] = {}

    def extra_fields(index: int, status: PrepareStatus | None) -> dict[str, Any]:
        notes = None if status is None else status.record.get("notes")
        return {"inputs": stamps[pending[index].id],
                "notes": [str(n) for n in notes] if isinstance(notes, list) else []}

    def write_ok(index: int, result: ClipResult, loaded: LoadedClip) -> None:
        item = pending[index]
        status = prepare_status(item.video)
        record = {**item_record(item), "status": OK, **result.as_record(),
                  "error_type": None, "error": None, **extra_fields(index, status)}
        prov = None if checkpoint is None else clip_provenance(
            item.video, {"video": item.video, "audio": item.audio}, checkpoint, scorer, verdict.speech,
            **settings_provenance)
        lengths = {"video_frames": len(loaded.inputs.video), "audio_frames": len(loaded.inputs.audio)}
        media = MediaChecks(**lengths) if status is None else media_checks_from_prepare(status.record, **lengths)
        record.update(assess_clip(result, scorer.options, loaded.audio, verdict.settings, verdict.reference,
                                  record, prov, verdict.drift, loaded.face, media))
        record["provenance"] = prov
        if calibration is not None:
            record["threshold_verdict"] = calibration.verdict(result.score)
        if transcriber is not None:
            record["transcripts"] = transcripts.pop(index)
        writer.write(record)
        counts["scored"] += 1

    def write_failed(index: int, error_type: str, error: str) -> None:
        status = prepare_status(pending[index].video)
        record = {**failed_record(pending[index], error_type, error, unscored_reasons(status)),
                  "provenance": None, **extra_fields(index, status)}
        if transcriber is not None:
            record["transcripts"] = transcripts.pop(index, None)
        writer.write(record)
        counts["failed"] += 1

    def loaded_length(loaded: LoadedClip) -> int:
        return clip_length(loaded.inputs)

    for batch, failures in model_batches(iter(loader), batch_size, max_frames, max_padding, loaded_length):
        for index, error_type, error in failures:
            write_failed(index, error_type, error)
        inputs = [loaded.inputs for _, loaded in batch]
        if batch and transcriber is not None:
            indices = [index for index, _ in batch]
            fields = transcribe_batch(transcriber, transcriber_name, inputs,
                                      [(pending[i].video, pending[i].audio) for i in indices], scorer)
            transcripts.update(zip(indices, fields))
        if batch:
            for (index, loaded), result in zip(batch, score_or_each(scorer, inputs)):
                if isinstance(result, Exception):
                    write_failed(index, type(result).__name__, str(result))
                else:
                    write_ok(index, result, loaded)
        bar.update(len(batch) + len(failures))
    bar.close()
    return counts


def transcribe_batch(
    transcriber: Transcriber,
    name: str,
    clips: Sequence[ClipInputs],
    paths: Sequence[tuple[str, str]],
    scorer: Scorer,
) -> list[dict[str, Any]]:
    """``transcripts`` fields of clips the scorer loaded from ``paths`` (video, audio). The
    scorer's inputs are reused when both checkpoints transform inputs alike; otherwise each clip
    is read again with the transcriber's settings (a read error fails that clip's field only)."""
    if transcriber.settings == scorer.settings:
        return transcribe_records(transcriber.transcribe_clips, clips, name)
    fields: list[dict[str, Any] | None] = [None] * len(paths)
    reloaded: list[tuple[int, ClipInputs]] = []
    for index, (video, audio) in enumerate(paths):
        try:
            reloaded.append((index, load_clip(video, audio, transcriber.settings,
                                              scorer.options.max_seconds, scorer.options.fps)))
        except (OSError, ValueError) as err:
            fields[index] = transcript_failure(name, err)
    if reloaded:
        decoded = transcribe_records(transcriber.transcribe_clips, [c for _, c in reloaded], name)
        for (index, _), field in zip(reloaded, decoded):
            fields[index] = field
    return fields


def add_transcribe_arguments(parser: argparse.ArgumentParser) -> None:
    """``--transcribe CKPT`` and its beam search options (shared with :mod:`.score_video`)."""
    group = parser.add_argument_group(
        "transcripts", "lips-only and audio-only transcripts from a fine-tuned seq2seq model, and their disagreement")
    group.add_argument("--transcribe", metavar="CKPT",
                       help="fine-tuned av_hubert_seq2seq checkpoint; use an audio-visual (AVSR) model: a "
                       "lip-reading (VSR) model's audio-only transcript is meaningless")
    group.add_argument("--beam", type=int, default=DecodeSettings.beam,
                       help="beam size for --transcribe (the reference uses 50; smaller is much faster on CPU)")
    group.add_argument("--lenpen", type=float, default=DecodeSettings.lenpen, help="length penalty for --transcribe")


def load_transcriber(args: Namespace, device: Any) -> tuple[Transcriber, str] | tuple[None, None]:
    """The transcriber of ``--transcribe`` and its name for records (the checkpoint's absolute
    path), or ``(None, None)`` without the flag."""
    if not args.transcribe:
        return None, None
    decode = DecodeSettings(beam=args.beam, lenpen=args.lenpen)
    transcriber = Transcriber.from_checkpoint(args.transcribe, decode, str(device), args.trust_checkpoint)
    return transcriber, os.path.abspath(args.transcribe)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.score_batch",
        description=(
            "Score mouth-ROI clips with SpeechForensics' lip-speech agreement score (higher = more "
            "likely real), writing one JSONL record per item as it goes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("data", nargs="?", help="manifest directory holding <gen-subset>.tsv (or use --list)")
    p.add_argument("--gen-subset", default="test", help="manifest split to score")
    p.add_argument("--list", help="SpeechForensics test_list.txt or CSV (path,label[,category][,audio])")
    p.add_argument("--data-root", help="root the --list paths are relative to (the mouth-ROI folder)")
    p.add_argument("--category-rule", default="auto", choices=sorted(lists.CATEGORY_RULES),
                   help="how to infer an item's category from its path when no column gives it")
    add_scorer_arguments(p)
    p.add_argument("--user-dir", help="fairseq user directory to import (only needed for extra plugins)")
    p.add_argument("--results-path", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="if --results-path holds scores of this shard made with other settings, discard them "
                   "(without it such a run is refused; with the same settings finished work is always reused)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per model call")
    p.add_argument("--max-frames", type=int, default=None,
                   help="cap on clips x longest stream (frames) per model call")
    p.add_argument("--max-padding", type=float, default=BatchLimits.max_padding,
                   help="cap on the padding per model call, as a fraction of its padded frames (clips are "
                   "batched shortest first, so only clips of similar length share a call)")
    p.add_argument("--num-workers", type=int, default=2, help="clip loading processes")
    p.add_argument("--num-shards", type=int, default=1, help="split the items into this many shards")
    p.add_argument("--shard-id", type=int, default=0, help="which shard this run scores")
    p.add_argument("--calibration", help="calibration JSON (sf-report --calibrate-fpr): adds threshold_verdict "
                   "(fake below its threshold on the paper's score) to records; the verdict itself comes from "
                   "--reference")
    add_transcribe_arguments(p)
    add_verdict_arguments(p)
    p.add_argument("--report", action="store_true", help="write a metrics report when done (unsharded runs)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for --report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def read_items(args: Namespace) -> list[lists.EvalItem]:
    if (args.list is None) == (args.data is None):
        raise SystemExit("error: give either a manifest directory (DATA) or --list, not both")
    if args.list is not None:
        return lists.read_list(args.list, args.data_root, args.category_rule)
    return lists.read_manifest_split(args.data, args.gen_subset, args.category_rule)


def input_fingerprint(args: Namespace) -> dict[str, Any]:
    """Identity of the run's input: content hash of the list (or manifest and its labels), the
    data root and the category rule."""
    if args.list is not None:
        return {"list_sha256": resume.file_sha256(args.list),
                "data_root": None if args.data_root is None else os.path.abspath(args.data_root),
                "category_rule": args.category_rule}
    labels = Path(args.data) / f"{args.gen_subset}.forgery"
    return {"manifest_sha256": resume.file_sha256(Path(args.data) / f"{args.gen_subset}.tsv"),
            "labels_sha256": resume.file_sha256(labels) if labels.is_file() else None,
            "category_rule": args.category_rule}


def score_fingerprint(args: Namespace, scorer: Scorer, transcriber: Transcriber | None,
                      verdict: VerdictConfig = VerdictConfig()) -> dict[str, Any]:
    """Everything that changes a shard's records (see the module docstring)."""
    return {
        "checkpoint_sha256": resume.file_sha256(args.path),
        "layer": args.layer,
        "max_offset": scorer.options.max_offset,
        "max_seconds": scorer.options.max_seconds,
        "precision": scorer.encoder.precision,
        "input_settings": asdict(scorer.settings),
        "transcribe": None if transcriber is None else {
            "checkpoint_sha256": resume.file_sha256(args.transcribe), "beam": args.beam, "lenpen": args.lenpen},
        "calibration_sha256": resume.file_sha256(args.calibration) if args.calibration else None,
        "verdict_settings": asdict(verdict.settings),
        "drift_settings": asdict(verdict.drift),
        "speech_settings": verdict.speech.as_record(),
        "reference_sha256": None if verdict.reference_path is None else resume.file_sha256(verdict.reference_path),
        "input": input_fingerprint(args),
    }


def accept_settings(scores: Path, record: Path, fingerprint: dict[str, Any], overwrite: bool) -> None:
    """Reuse ``scores`` if it was made with ``fingerprint``; else discard it (``overwrite``) or
    refuse. Then record ``fingerprint``. Raises :class:`SystemExit` when refusing."""
    has_records = scores.is_file() and scores.stat().st_size > 0
    if has_records:
        hint = "pass --overwrite to discard this shard's scores, or give another --results-path"
        try:
            reuse = resume.check_fingerprint(record, fingerprint, f"{scores.name}", overwrite, hint)
        except resume.SettingsMismatch as err:
            raise SystemExit(f"error: {err}") from None
        if not reuse and not record.is_file() and not overwrite:
            raise SystemExit(f"error: {scores} has no settings record ({record.name}; made by an older version?), "
                             f"so its scores cannot be matched to this run's settings; {hint}")
        if not reuse:
            logger.warning("%s: discarding the scores made with other settings", scores)
            scores.unlink()
    resume.write_fingerprint(record, fingerprint)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # force: importing fairseq leaves a DEBUG root handler behind (matplotlib floods it).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    return run_interruptible("sf-score-batch", run, args,
                             f"the records written so far are kept in {args.results_path}: "
                             "run the same command again to resume")


def run(args: Namespace) -> int:
    """:func:`main` after argument parsing (interruptions are handled there)."""
    if not 0 <= args.shard_id < args.num_shards:
        raise SystemExit(f"error: --shard-id must be in [0, {args.num_shards})")
    if args.user_dir:
        from fairseq.utils import import_user_module

        import_user_module(Namespace(user_dir=args.user_dir))
    try:
        items = read_items(args)
    except (OSError, lists.ListFormatError) as err:
        raise SystemExit(error_text(err)) from err
    if len({item.id for item in items}) != len(items):
        raise SystemExit("error: the input lists some item more than once (ids must be unique)")
    items = items[args.shard_id :: args.num_shards]

    out = Path(args.results_path)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.num_shards == 1 else f".{args.shard_id}-of-{args.num_shards}"
    scores = out / f"scores{suffix}.jsonl"
    lock = resume.RunLock(out / f"scores{suffix}.lock", f"scoring into {scores}")
    try:
        lock.acquire()
    except resume.RunLocked as err:
        raise SystemExit(f"error: {err}") from None
    try:
        resume.remove_stale_temporaries(out)
        return score_shard(args, items, out, suffix)
    finally:
        lock.release()


def score_shard(args: Namespace, items: list[lists.EvalItem], out: Path, suffix: str) -> int:
    """Score one shard's ``items`` into ``out`` (its lock held), print the summary."""
    scores = out / f"scores{suffix}.jsonl"
    device = pick_device(args.cpu)
    try:
        calibration = Calibration.load(args.calibration) if args.calibration else None
        verdict = verdict_config_from_arguments(args)
        scorer = load_scorer_from_arguments(args, args.path, device)
        transcriber, transcriber_name = load_transcriber(args, device)
        fingerprint = score_fingerprint(args, scorer, transcriber, verdict)
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # missing/unsafe checkpoint, bad calibration/reference
        raise SystemExit(error_text(err)) from err
    accept_settings(scores, out / f"fingerprint{suffix}.json", fingerprint, args.overwrite)
    run_info = {
        "checkpoint": os.path.abspath(args.path),
        "checkpoint_sha256": fingerprint["checkpoint_sha256"],
        "layer": args.layer,
        "input": os.path.abspath(args.list) if args.list else f"{os.path.abspath(args.data)}:{args.gen_subset}",
        "data_root": args.data_root,
        "max_offset": scorer.options.max_offset,
        "max_seconds": scorer.options.max_seconds,
        "precision": scorer.encoder.precision,
        "device": str(device),
        "input_settings": asdict(scorer.settings),
        "transcribe": None if transcriber is None else {
            "checkpoint": transcriber_name, "beam": args.beam, "lenpen": args.lenpen},
        **verdict.provenance(),
        "speech_settings": verdict.speech.as_record(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    resume.atomic_write_json(out / f"run{suffix}.json", run_info)

    start = time.perf_counter()
    with ResultWriter(scores) as writer:
        counts = score_items(
            items, scorer, writer, args.batch_size, args.max_frames, args.num_workers,
            calibration, progress=not args.no_progress,
            transcriber=transcriber, transcriber_name=transcriber_name or "transcriber",
            max_padding=args.max_padding, verdict=verdict, checkpoint=args.path,
        )
    seconds = time.perf_counter() - start
    latest = latest_records([scores])
    n_ok = sum(1 for item in items if latest.get(item.id, {}).get("status") == OK)
    verdicts = Counter(str(latest[item.id].get("verdict")) for item in items if item.id in latest)
    summary = {**counts, "items": len(items), "ok": n_ok, "not_ok": len(items) - n_ok,
               "verdicts": dict(sorted(verdicts.items())), "seconds": round(seconds, 2)}
    print(
        f"{len(items)} items: {counts['scored']} scored now, {counts['skipped']} already done, "
        f"{counts['failed']} failed; {n_ok} ok in total; {seconds:.1f} s "
        f"({counts['scored'] / max(seconds, 1e-9):.2f} clips/s)"
    )
    print("verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))
    if args.report and args.num_shards == 1:
        # List order, whatever order the clips were scored in (the bootstrap depends on it).
        records = [latest[item.id] for item in items if item.id in latest]
        rep = write_report(records, out / "report", threshold=calibration.threshold if calibration else None,
                           n_boot=args.n_boot, extra=run_info)
        summary["report"] = str(out / "report" / "report.md")
        if rep["metrics"]:
            print(f"AUC {rep['metrics']['auc']:.4f} on {rep['n_used']} items "
                  f"({rep['n_left_out']} left out); report in {out / 'report'}")
            word_auc = (rep.get("transcripts") or {}).get("word_disagreement_auc")
            if word_auc is not None:
                print(f"transcript word disagreement as a detector: AUC {word_auc:.4f} "
                      f"on {rep['transcripts']['n']} transcribed items")
        else:
            print(f"no metrics: {rep['metrics_note']}; report in {out / 'report'}")
    resume.atomic_write_json(out / f"summary{suffix}.json", summary)
    return 0 if n_ok == len(items) else 1


if __name__ == "__main__":
    raise SystemExit(main())
