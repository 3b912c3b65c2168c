"""The batch-scoring engine: clips in, score records out, streamed to a :class:`.results.ResultWriter`.

:func:`score_items` loads clips in loader processes (:class:`ClipDataset`: the clip, its speech
analysis and, for items of an ``sf-prepare`` folder, its prepare status), scores them in batches
of similar length (:mod:`sf_fairseq.data.batching`), gives each its verdict and provenance
(:mod:`.verdict`, :mod:`.provenance`) and, with a transcriber, its transcripts; a failure is a
record, never an exception. :func:`score_fingerprint` and :func:`accept_settings` are the rule
that finished records are only reused with the settings that made them (:mod:`sf_fairseq.resume`).

:class:`BatchJob` → :func:`run` is one ``sf-score-batch`` run (its output layout, resuming and
sharding are described in :mod:`.score_batch`); :func:`score_list` runs it for stages that call
it as a function (the demo).

Used by the commands ``sf-score-batch`` (:mod:`.score_batch`), ``sf-benchmark``, ``sf-robustness``
and ``sf-score-ray``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import functools
import json
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
from sf_fairseq.records import Transcripts
from sf_fairseq.data.batching import BatchLimits, length_order

from . import lists
from .encode import SAMPLE_RATE, ClipInputs, InputSettings, load_clip
from .jobs import error_text, run_interruptible
from .metrics import Calibration
from .pipeline import ClipResult, ScoreOptions, Scorer, load_scorer_from_arguments, pick_device
from .provenance import clip_provenance
from .report import write_report
from .results import (FAILED, OK, PrepareStatus, ResultWriter, has_transcripts, input_stamps, iter_records,
                      latest_records, prepare_status)
from .scorer_settings import ScorerSettings
from .speech import AudioAnalysis, SpeechSettings, analyse_wav
from .transcriber import DecodeSettings, Transcriber, transcribe_records
from .verdict import (
    PREPARE_STATUS_REASONS, VERDICT_FIELDS, FaceStats, MediaChecks, VerdictConfig, assess_clip,
    face_stats_from_prepare, media_checks_from_prepare, unscored_verdict,
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
    if status is None or not status.record.landmarks:
        return None
    try:
        return face_stats_from_prepare(status.out_dir, status.record, status.track)
    except (OSError, ValueError, KeyError, IndexError) as err:
        logger.warning("%s: no face statistics (%s)", status.record.landmarks, err)
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
    reason = None if status is None else PREPARE_STATUS_REASONS.get(status.record.status)
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
        latest = {r.id: r for r in iter_records(writer.path)}
        done = {i for i in done if has_transcripts(latest.get(i), transcriber_name)}
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
        notes = [] if status is None else list(status.record.notes or ())
        return {"inputs": stamps[pending[index].id], "notes": notes}

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
    """``transcripts`` fields of clips the scorer loaded from ``paths`` (video, audio), in their
    on-disk form (:meth:`sf_fairseq.records.Transcripts.to_dict`: the single-video command puts
    them in its JSON as they are). The scorer's inputs are reused when both checkpoints transform
    inputs alike; otherwise each clip is read again with the transcriber's settings (a read
    error fails that clip's field only)."""
    if transcriber.settings == scorer.settings:
        return [t.to_dict() for t in transcribe_records(transcriber.transcribe_clips, clips, name)]
    fields: list[Transcripts | None] = [None] * len(paths)
    reloaded: list[tuple[int, ClipInputs]] = []
    for index, (video, audio) in enumerate(paths):
        try:
            reloaded.append((index, load_clip(video, audio, transcriber.settings,
                                              scorer.options.max_seconds, scorer.options.fps)))
        except (OSError, ValueError) as err:
            fields[index] = Transcripts.failure(name, err)
    if reloaded:
        decoded = transcribe_records(transcriber.transcribe_clips, [c for _, c in reloaded], name)
        for (index, _), field in zip(reloaded, decoded):
            fields[index] = field
    return [t.to_dict() for t in fields]


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


# ---- one sf-score-batch run --------------------------------------------------------------------


def _path(value: str | os.PathLike | None) -> str | None:
    return None if value is None else os.fspath(value)


@dataclass(frozen=True)
class BatchJob:
    """One ``sf-score-batch`` run (the command builds it from its options; stages build it
    directly). Defaults are the command's.

    Attributes:
        list_path: SpeechForensics ``test_list.txt`` or CSV (None: the manifest split
            ``data``/``gen_subset``); ``data_root`` the mouth-ROI folder its paths are relative
            to; ``category_rule`` how categories are inferred from paths.
        results_path: the output directory.
        scorer: the checkpoint and score settings.
        user_dir: a fairseq user directory to import (extra plugins only).
        overwrite: discard this shard's records made with other settings (else refuse).
        batch_size, max_frames, max_padding: the per-call limits (:class:`BatchLimits`).
        num_workers: clip loading processes (0: in this process).
        num_shards, shard_id: score every ``num_shards``-th item from ``shard_id``.
        calibration: calibration JSON adding ``threshold_verdict``.
        transcribe: fine-tuned seq2seq checkpoint for transcripts (None: none); ``beam`` and
            ``lenpen`` its beam search.
        verdict: verdict thresholds and reference set.
        report: write the metrics report when done (unsharded runs), ``n_boot`` bootstrap
            replicates.
        progress: show a progress bar.
    """

    list_path: str | os.PathLike | None
    results_path: str | os.PathLike
    scorer: ScorerSettings
    data: str | os.PathLike | None = None
    gen_subset: str = "test"
    data_root: str | os.PathLike | None = None
    category_rule: str = "auto"
    user_dir: str | None = None
    overwrite: bool = False
    batch_size: int = 8
    max_frames: int | None = None
    max_padding: float | None = BatchLimits.max_padding
    num_workers: int = 2
    num_shards: int = 1
    shard_id: int = 0
    calibration: str | None = None
    transcribe: str | None = None
    beam: int = DecodeSettings.beam
    lenpen: float = DecodeSettings.lenpen
    verdict: VerdictConfig = VerdictConfig()
    report: bool = False
    n_boot: int = 1000
    progress: bool = True

    def arguments(self) -> Namespace:
        """The job as the options :func:`score_fingerprint` and :func:`load_transcriber` read
        (shared with the commands that score through :func:`score_items`)."""
        return Namespace(path=os.fspath(self.scorer.checkpoint), **vars(self.scorer.arguments()),
                         list=_path(self.list_path), data=_path(self.data), gen_subset=self.gen_subset,
                         data_root=_path(self.data_root), category_rule=self.category_rule,
                         calibration=self.calibration, transcribe=self.transcribe, beam=self.beam,
                         lenpen=self.lenpen)


@dataclass(frozen=True)
class BatchSummary:
    """What :func:`score_list` did: the run's exit status (0: every item ok, 1: some not,
    130/143: interrupted) and ``summary.json``'s content (None when interrupted)."""

    exit_status: int
    summary: dict[str, Any] | None


def score_list(job: BatchJob) -> BatchSummary:
    """:func:`run` for stages that call it as a function: Ctrl-C and SIGTERM stop it as they stop
    the command (records so far kept), a bad input or refused settings raise ``SystemExit``
    with the command's message."""
    status = run_interruptible("sf-score-batch", run, job,
                               f"the records written so far are kept in {job.results_path}: "
                               "run the same stage again to resume")
    suffix = "" if job.num_shards == 1 else f".{job.shard_id}-of-{job.num_shards}"
    summary_path = Path(job.results_path) / f"summary{suffix}.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if status in (0, 1) else None
    return BatchSummary(status, summary)


def read_items(job: BatchJob) -> list[lists.EvalItem]:
    """The job's items, from its list file or its manifest split."""
    if (job.list_path is None) == (job.data is None):
        raise SystemExit("error: give either a manifest directory (DATA) or --list, not both")
    if job.list_path is not None:
        return lists.read_list(job.list_path, job.data_root, job.category_rule)
    return lists.read_manifest_split(job.data, job.gen_subset, job.category_rule)


def run(job: BatchJob) -> int:
    """Score the job's shard into ``results_path`` (its lock held); the exit status. Raises
    ``SystemExit`` with a message on a bad input, a run already working there or refused
    settings."""
    if not 0 <= job.shard_id < job.num_shards:
        raise SystemExit(f"error: --shard-id must be in [0, {job.num_shards})")
    if job.user_dir:
        from fairseq.utils import import_user_module

        import_user_module(Namespace(user_dir=job.user_dir))
    try:
        items = read_items(job)
    except (OSError, lists.ListFormatError) as err:
        raise SystemExit(error_text(err)) from err
    if len({item.id for item in items}) != len(items):
        raise SystemExit("error: the input lists some item more than once (ids must be unique)")
    items = items[job.shard_id :: job.num_shards]

    out = Path(job.results_path)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if job.num_shards == 1 else f".{job.shard_id}-of-{job.num_shards}"
    scores = out / f"scores{suffix}.jsonl"
    try:
        with resume.exclusive_output(out / f"scores{suffix}.lock", f"scoring into {scores}", out):
            return score_shard(job, items, out, suffix)
    except resume.RunLocked as err:
        raise SystemExit(f"error: {err}") from None


def score_shard(job: BatchJob, items: list[lists.EvalItem], out: Path, suffix: str) -> int:
    """Score one shard's ``items`` into ``out`` (its lock held), print the summary."""
    scores = out / f"scores{suffix}.jsonl"
    settings = job.scorer
    checkpoint = os.fspath(settings.checkpoint)
    device = pick_device(settings.cpu)
    options = job.arguments()
    try:
        calibration = Calibration.load(job.calibration) if job.calibration else None
        scorer = load_scorer_from_arguments(settings.arguments(), checkpoint, device)
        transcriber, transcriber_name = load_transcriber(options, device)
        fingerprint = score_fingerprint(options, scorer, transcriber, job.verdict)
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # missing/unsafe checkpoint, bad calibration
        raise SystemExit(error_text(err)) from err
    accept_settings(scores, out / f"fingerprint{suffix}.json", fingerprint, job.overwrite)
    run_info = {
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_sha256": fingerprint["checkpoint_sha256"],
        "layer": settings.layer,
        "input": (os.path.abspath(job.list_path) if job.list_path is not None
                  else f"{os.path.abspath(job.data)}:{job.gen_subset}"),
        "data_root": options.data_root,
        "max_offset": scorer.options.max_offset,
        "max_seconds": scorer.options.max_seconds,
        "precision": scorer.encoder.precision,
        "device": str(device),
        "input_settings": asdict(scorer.settings),
        "transcribe": None if transcriber is None else {
            "checkpoint": transcriber_name, "beam": job.beam, "lenpen": job.lenpen},
        **job.verdict.provenance(),
        "speech_settings": job.verdict.speech.as_record(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    resume.atomic_write_json(out / f"run{suffix}.json", run_info)

    start = time.perf_counter()
    with ResultWriter(scores) as writer:
        counts = score_items(
            items, scorer, writer, job.batch_size, job.max_frames, job.num_workers,
            calibration, progress=job.progress,
            transcriber=transcriber, transcriber_name=transcriber_name or "transcriber",
            max_padding=job.max_padding, verdict=job.verdict, checkpoint=checkpoint,
        )
    seconds = time.perf_counter() - start
    latest = latest_records([scores])
    n_ok = sum(1 for item in items if item.id in latest and latest[item.id].status == OK)
    verdicts = Counter(str(latest[item.id].verdict) for item in items if item.id in latest)
    summary = {**counts, "items": len(items), "ok": n_ok, "not_ok": len(items) - n_ok,
               "verdicts": dict(sorted(verdicts.items())), "seconds": round(seconds, 2)}
    print(
        f"{len(items)} items: {counts['scored']} scored now, {counts['skipped']} already done, "
        f"{counts['failed']} failed; {n_ok} ok in total; {seconds:.1f} s "
        f"({counts['scored'] / max(seconds, 1e-9):.2f} clips/s)"
    )
    print("verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))
    if job.report and job.num_shards == 1:
        # List order, whatever order the clips were scored in (the bootstrap depends on it).
        records = [latest[item.id] for item in items if item.id in latest]
        rep = write_report(records, out / "report", threshold=calibration.threshold if calibration else None,
                           n_boot=job.n_boot, extra=run_info)
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
