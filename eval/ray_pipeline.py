"""Raw videos to score records as one Ray Data pipeline.

Stages (each a pool of Ray actors, so that models load once per worker)::

    input videos ──► PrepareStage (CPU workers) ──► ScoreStage (model workers) ──► driver
                     decode, face tracks,           length-bucketed batches,       ResultWriter
                     mouth ROI, wav, clip inputs    Scorer.score_clips              (JSONL)

:class:`PrepareStage` runs :class:`sf_fairseq.preprocess.prepare_engine.VideoPreprocessor` on one video
(the per-video function of ``sf-prepare``), into a scratch folder on the worker's node, or into
``roi_dir`` when ROIs are asked for, and reads each face track back with
:func:`.encode.load_clip`, as ``sf-score-batch`` reads a prepared clip: the model sees exactly the
inputs of the two-step path (``sf-prepare`` then ``sf-score-batch``), H.264 round trip included,
so the scores are the same. :class:`ScoreStage` receives a few batches' worth of clips at a time,
sorts them by length and scores them in batches under :class:`sf_fairseq.data.batching.BatchLimits`.

Records are those of ``sf-score-batch`` (:class:`sf_fairseq.records.ScoreRecord`), built with its
:func:`.batch_engine.item_record` / :func:`.batch_engine.failed_record`, one per face track (ids as
``sf-prepare`` names the tracks), with ``video`` and ``audio`` both the raw input, ``inputs`` its
size and modification time, ``notes`` from preprocessing, and one more field::

    "track": {"input": <input id>, "index": k, "count": n} | null

which lets a rerun know that every track of an input was scored. An input that preprocessing
rejects (``no_face``, ``unreadable``, ...) gets one ``failed`` record with the ``sf-prepare``
status as ``error_type`` and ``"track": null``; for ``no_face``, ``no_audio`` and ``too_short``
its verdict is ``inconclusive`` with that reason, as in ``sf-score-batch``.

Verdicts (:mod:`.verdict`) are those of ``sf-score-batch`` on the same ROIs: the CPU stage
analyses the wav (voice activity, levels), reads the face-track statistics from the landmarks
and the stream checks from the preprocessing record, and hashes the scored ROI and wav while
they exist; the model stage adds the verdict fields and ``provenance`` (input = the raw video;
``files`` = the ROI and wav scored, their ``path`` null when they were not kept, i.e. without
``roi_dir``: such a record cannot be re-scored by ``sf-verify``).

Fault tolerance: a Python exception on an item becomes its failed record. A worker process that
dies (out of memory, a crash in a native library) is restarted by Ray and its items are retried
up to ``max_retries`` times; an item still unfinished after that gets a failed record
(``error_type`` ``WorkerLost``) and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from sf_fairseq.data.batching import BatchLimits, length_batches
from sf_fairseq.records import PrepareRecord, ScoreRecord
from sf_fairseq.preprocess.prepare_engine import InputItem, PrepareOptions, VideoPreprocessor

from . import lists
from .encode import ClipInputs, InputSettings, load_clip
from .pipeline import ScoreOptions, Scorer, load_scorer_from_arguments
from .provenance import clip_provenance, file_entry
from .results import OK, PrepareStatus, input_stamps
from .batch_engine import failed_record, item_record, prepared_face
from .speech import AudioAnalysis, AudioStats, analyse_wav
from .verdict import (
    PREPARE_STATUS_REASONS, FaceStats, MediaChecks, VerdictConfig, assess_clip, media_checks_from_prepare,
)

logger = logging.getLogger(__name__)

# Statuses of sf-prepare whose ROIs are scored (``truncated`` too with keep_truncated).
SCORED_STATUSES = frozenset({"ok"})
# Clips a model worker receives at a time, in model batches: it sorts them by length first.
BUCKET_BATCHES = 4
# One Ray block per input up to this many blocks: a dead worker retries its block's inputs.
MAX_BLOCKS = 10_000
WORKER_LOST = "WorkerLost"
# Record key, from the CPU stage to the model stage only, holding what the verdict needs besides
# the score (:func:`verdict_inputs`).
VERDICT_INPUTS = "_verdict_inputs"


@dataclass(frozen=True)
class VideoItem:
    """One raw video to score: ``id`` as ``sf-prepare`` names it, ``problem`` when it cannot be
    processed under any id (a ``bad_name`` in ``sf-prepare``)."""

    id: str
    path: str
    label: int | None = None
    category: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class StageSettings:
    """What the workers need besides the item: preprocessing and input settings, the score rule
    options (for the stream caps), where ROIs go (None: a scratch folder, deleted) and the
    verdict settings (voice activity for the CPU stage, the rest for the model stage)."""

    prepare: PrepareOptions
    inputs: InputSettings
    score: ScoreOptions
    roi_dir: str | None = None
    keep_truncated: bool = False
    verdict: VerdictConfig = VerdictConfig()


@dataclass(frozen=True)
class WorkerPlan:
    """How many Ray workers of each kind, and what each reserves."""

    cpu_workers: int
    model_workers: int
    model_gpus: float  # per model worker; 0 = the model runs on CPU
    model_cpus: int  # per model worker (its torch threads on CPU)
    max_retries: int  # retries of the items of a worker that died


def plan_workers(
    total_cpus: int, total_gpus: int, cpu_workers: int | None, model_workers: int | None,
    model_threads: int | None, use_gpu: bool, max_retries: int = 3,
) -> WorkerPlan:
    """Default sizing: one model worker per GPU (else one on CPU with half the CPUs, at least
    one); every CPU left over runs a preprocessing worker (at least one)."""
    gpu = use_gpu and total_gpus > 0
    model_workers = model_workers or (int(total_gpus) if gpu else 1)
    if model_threads is None:
        model_threads = 1 if gpu else max(1, total_cpus // (2 * model_workers))
    if cpu_workers is None:
        cpu_workers = max(1, total_cpus - model_workers * model_threads)
    return WorkerPlan(cpu_workers, model_workers, 1.0 if gpu else 0.0, model_threads, max_retries)


def read_videos(
    source: str | os.PathLike, root: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None, category_rule: str = "auto",
    exclude: Sequence[str | os.PathLike] = (),
) -> list[VideoItem]:
    """Raw videos of a folder or list file, found and named as ``sf-prepare`` does
    (:func:`~sf_fairseq.preprocess.prepare_engine.discover_inputs`), none under the ``exclude`` folders
    (the outputs). Labels and categories come from ``labels`` (a SpeechForensics list or CSV,
    see :mod:`.lists`, paths relative to ``root`` or the input folder) where it lists the
    video, else the category from the id by ``category_rule`` and no label."""
    from sf_fairseq.preprocess.prepare_engine import discover_inputs

    excluded = [Path(folder).resolve() for folder in exclude]
    found = [item for item in discover_inputs(source, root)
             if not any(folder in Path(item.path).parents for folder in excluded)]
    base = root if root is not None else (source if Path(source).is_dir() else Path(source).parent)
    by_path = {}
    if labels is not None:
        by_path = {os.path.realpath(e.video): e for e in lists.read_list(labels, str(base), category_rule)}
    rule = lists.CATEGORY_RULES[category_rule]
    items = []
    for item in found:
        known = by_path.get(os.path.realpath(item.path))
        label, category = (known.label, known.category) if known else (None, rule(item.id))
        items.append(VideoItem(item.id, item.path, label, category, item.problem))
    return items


def _eval_item(item: VideoItem, item_id: str) -> lists.EvalItem:
    """The record identity of ``item`` (or of one of its tracks): both streams come from the raw
    video."""
    return lists.EvalItem(item_id, item.path, item.path, item.label, item.category)


def _item_from_row(row: dict[str, Any]) -> VideoItem:
    return VideoItem(row["id"], row["path"], row["label"], row["category"])


def _eval_item_of(record: dict[str, Any]) -> lists.EvalItem:
    return lists.EvalItem(record["id"], record["video"], record["audio"], record["label"], record["category"])


def input_failed_record(item: VideoItem, error_type: str, error: str, notes: Sequence[str] = ()) -> ScoreRecord:
    """The one record of an input with no scored track (``inconclusive`` with the reason when
    ``error_type`` is an ``sf-prepare`` status that means nothing to judge, e.g. ``no_face``)."""
    reason = PREPARE_STATUS_REASONS.get(error_type)
    return ScoreRecord.from_dict({
        **failed_record(_eval_item(item, item.id), error_type, error, [reason] if reason else []),
        "provenance": None, "inputs": input_stamps(item.path, item.path), "notes": list(notes), "track": None})


def _track_failed(record: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """``record`` (a track's) turned into its failed record."""
    return {**record, **failed_record(_eval_item_of(record), type(error).__name__, str(error)), "provenance": None}


def verdict_inputs(
    clip: ClipInputs, audio: AudioAnalysis, status: PrepareStatus, files: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """JSON-ready checks of one track for the model stage (what ``sf-score-batch``'s loader
    hands over besides the clip): the wav analysis, face-track statistics, stream checks from
    the preprocessing record, and the scored files' provenance entries."""
    face = prepared_face(status)
    media = media_checks_from_prepare(status.record, video_frames=len(clip.video), audio_frames=len(clip.audio))
    return {"audio_stats": asdict(audio.stats), "speech": audio.speech.astype(int).tolist(),
            "full_duration_s": audio.full_duration_s, "face": None if face is None else asdict(face),
            "media": asdict(media), "files": files}


def _from_verdict_inputs(
    checks: dict[str, Any], config: VerdictConfig
) -> tuple[AudioAnalysis, FaceStats | None, MediaChecks]:
    audio = AudioAnalysis(AudioStats(**checks["audio_stats"]), np.asarray(checks["speech"], dtype=bool),
                          config.speech, checks["full_duration_s"])
    face = None if checks["face"] is None else FaceStats(**checks["face"])
    return audio, face, MediaChecks(**checks["media"])


def _row(record: dict[str, Any] | ScoreRecord, clip: ClipInputs | None, crop: int, feat_dim: int) -> dict[str, Any]:
    """A row between the stages: the record so far (JSON) and the clip's inputs (empty arrays when
    there is nothing to score, so every row has the same columns)."""
    if clip is None:
        clip = ClipInputs(np.zeros((0, crop, crop), np.float32), np.zeros((0, feat_dim), np.float32))
    if isinstance(record, ScoreRecord):
        record = record.to_dict()
    return {"record": json.dumps(record, ensure_ascii=False), "pending": record["status"] is None,
            "video": clip.video, "audio": clip.audio}


class PrepareStage:
    """CPU worker: one raw video -> one row per face track (its clip inputs), or one failed row."""

    def __init__(self, settings: StageSettings):
        import cv2
        import torch

        cv2.setNumThreads(1)  # parallelism comes from the workers
        torch.set_num_threads(1)
        self.settings = settings
        self.preprocessor = VideoPreprocessor(settings.prepare)
        self.scored = SCORED_STATUSES | ({"truncated"} if settings.keep_truncated else set())
        self.feat_dim = 26 * settings.inputs.stack_order

    def __call__(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return [_row(record, clip, self.settings.inputs.crop_size, self.feat_dim)
                for record, clip in self.prepare(_item_from_row(row))]

    def prepare(self, item: VideoItem) -> list[tuple[dict[str, Any] | ScoreRecord, ClipInputs | None]]:
        """Records (status None = to be scored) and clip inputs of ``item``'s tracks."""
        if self.settings.roi_dir is not None:
            return self._prepare_into(item, Path(self.settings.roi_dir))
        scratch = tempfile.mkdtemp(prefix="sf-score-ray-")
        try:
            return self._prepare_into(item, Path(scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _prepare_into(self, item: VideoItem, out_dir: Path) -> list[tuple[dict[str, Any] | ScoreRecord,
                                                                             ClipInputs | None]]:
        status = PrepareRecord.from_dict(self.preprocessor.process(InputItem(item.id, item.path), out_dir))
        notes = list(status.notes or ())
        if status.status not in self.scored:
            return [(input_failed_record(item, status.status, status.reason, notes), None)]
        tracks = status.tracks
        audio = str(out_dir / status.audio)
        score = self.settings.score
        out = []
        for track in tracks:
            record = {**item_record(_eval_item(item, track["id"])), "status": None,
                      "inputs": input_stamps(item.path, item.path), "notes": notes,
                      "track": {"input": item.id, "index": track["track"], "count": len(tracks)}}
            video = str(out_dir / track["video"])
            try:
                clip = load_clip(video, audio, self.settings.inputs, score.max_seconds, score.fps)
                analysis = analyse_wav(audio, self.settings.verdict.speech, score.max_seconds)
                files = {"video": self._file_entry(video), "audio": self._file_entry(audio)}
            except Exception as err:  # noqa: BLE001 - as in sf-score-batch: a bad clip is a record
                out.append((_track_failed(record, err), None))
                continue
            prepared = PrepareStatus(out_dir, status, int(track["track"]))
            record[VERDICT_INPUTS] = verdict_inputs(clip, analysis, prepared, files)
            out.append((record, clip))
        return out

    def _file_entry(self, path: str) -> dict[str, Any]:
        """Provenance entry of a scored file; its path only when the file is kept."""
        entry = file_entry(path)
        return entry if self.settings.roi_dir is not None else {**entry, "path": None}


class ScoreStage:
    """Model worker: scores the pending rows of a batch, shortest clips first, in model batches
    under ``limits``, and gives each its verdict and provenance; passes the failed rows through.
    Outputs only the records."""

    def __init__(self, scorer_args: argparse.Namespace, device: str, limits: BatchLimits,
                 precision: str, threads: int, verdict: VerdictConfig = VerdictConfig(),
                 settings_provenance: dict[str, Any] | None = None):
        import torch

        torch.set_num_threads(threads)
        # The driver resolved the precision (``auto``) once: every worker runs and records that one,
        # whatever its own device would pick, so that one run never mixes precisions.
        self.scorer: Scorer = load_scorer_from_arguments(scorer_args, scorer_args.path, torch.device(device),
                                                         precision=precision)
        self.limits = limits
        self.checkpoint = scorer_args.path
        self.verdict = verdict
        # Made by the driver (it hashes the reference set once, where its path is valid).
        self.settings_provenance = verdict.provenance() if settings_provenance is None else settings_provenance

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [json.loads(r) for r in batch["record"]]
        checks = [r.pop(VERDICT_INPUTS, None) for r in records]
        pending = [i for i, p in enumerate(batch["pending"]) if p]
        clips = {i: ClipInputs(np.asarray(batch["video"][i]), np.asarray(batch["audio"][i])) for i in pending}
        lengths = [max(clips[i].video.shape[0], clips[i].audio.shape[0]) for i in pending]
        for group in length_batches(lengths, self.limits):
            indices = [pending[g] for g in group]
            for index, result in zip(indices, self._score([clips[i] for i in indices])):
                if isinstance(result, Exception):
                    records[index] = _track_failed(records[index], result)
                else:
                    records[index] = self._scored(records[index], result, checks[index])
        return {"record": np.array([json.dumps(r, ensure_ascii=False) for r in records], dtype=object)}

    def _scored(self, record: dict[str, Any], result: Any, checks: dict[str, Any]) -> dict[str, Any]:
        """The record of a scored track, with its verdict fields and provenance (as
        ``sf-score-batch`` makes them)."""
        record = {**record, "status": OK, **result.as_record(), "error_type": None, "error": None}
        audio, face, media = _from_verdict_inputs(checks, self.verdict)
        prov = clip_provenance(record["video"], {}, self.checkpoint, self.scorer, self.verdict.speech,
                               **self.settings_provenance)
        prov["files"] = checks["files"]  # hashed by the CPU stage, while the files existed
        v = self.verdict
        record.update(assess_clip(result, self.scorer.options, audio, v.settings, v.reference, record, prov,
                                  v.drift, face, media))
        record["provenance"] = prov
        return record

    def _score(self, clips: list[ClipInputs]) -> list[Any]:
        """Results of a model batch; if the batch fails (e.g. out of memory), clip by clip, a
        clip's error in place of its result."""
        try:
            return self.scorer.score_clips(clips)
        except (RuntimeError, ValueError) as err:
            if len(clips) == 1:
                return [err]
            logger.warning("batch of %d failed (%s); scoring its clips one at a time", len(clips), err)
        return [self._score([clip])[0] for clip in clips]


def finished_inputs(items: Sequence[VideoItem], latest: dict[str, ScoreRecord]) -> set[str]:
    """Ids of the inputs whose every face track has, as its latest record (``latest``: see
    :func:`.results.latest_records`), a successful one made from the input file as it is now
    (same size and modification time)."""
    tracks: dict[str, dict[int, ScoreRecord]] = {}
    for record in latest.values():
        if isinstance(record.track, dict):
            tracks.setdefault(record.track["input"], {})[record.track["index"]] = record
    done = set()
    for item in items:
        found = tracks.get(item.id)
        if not found:
            continue
        count = next(iter(found.values())).track["count"]
        stamps = input_stamps(item.path, item.path)
        if set(found) == set(range(count)) and all(r.status == OK and r.inputs == stamps for r in found.values()):
            done.add(item.id)
    return done


def run_pipeline(
    items: Sequence[VideoItem],
    settings: StageSettings,
    scorer_args: argparse.Namespace,
    precision: str,
    limits: BatchLimits,
    plan: WorkerPlan,
    prepare_stage: type = PrepareStage,
) -> Iterator[ScoreRecord]:
    """Score ``items`` on the running Ray cluster, yielding each record as it is done (any
    order); inputs that no worker finished (it died ``max_retries + 1`` times) come last as
    ``WorkerLost`` records. Verdicts follow ``settings.verdict``; provenance names the
    checkpoint ``scorer_args.path``. ``prepare_stage`` is the CPU stage's class (tests swap it)."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # A block whose task failed max_retries + 1 times (its worker died each time) is dropped,
    # not fatal: its inputs get WorkerLost records below.
    context.max_errored_blocks = -1
    for item in items:
        if item.problem is not None:
            yield input_failed_record(item, "bad_name", item.problem)
    valid = [item for item in items if item.problem is None]
    if not valid:
        return
    # Workers may run in another folder: they load (and record) the checkpoint by its absolute path.
    scorer_args = argparse.Namespace(**{**vars(scorer_args), "path": os.path.abspath(scorer_args.path)})
    rows = [{"id": it.id, "path": it.path, "label": it.label, "category": it.category} for it in valid]
    dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
    # A dead worker is always replaced; the task it was running (its items) is retried
    # max_retries times. Ray Data has no named parameter for these yet (ray_remote_args).
    # One preprocessing task in flight per worker: a worker's death then costs a try of the
    # input it was processing only, not of those queued behind it.
    retry = {"max_restarts": -1, "max_task_retries": plan.max_retries}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
        dataset = dataset.flat_map(
            prepare_stage, fn_constructor_args=(settings,), num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=plan.cpu_workers, max_tasks_in_flight_per_actor=1), **retry,
        )
        dataset = dataset.map_batches(
            ScoreStage, batch_size=limits.batch_size * BUCKET_BATCHES, batch_format="numpy",
            fn_constructor_args=(scorer_args, "cuda" if plan.model_gpus else "cpu", limits, precision,
                                 plan.model_cpus, settings.verdict, settings.verdict.provenance()),
            num_cpus=plan.model_cpus, num_gpus=plan.model_gpus,
            compute=ray.data.ActorPoolStrategy(size=plan.model_workers), **retry,
        )
    expected: dict[str, int] = {}
    received: dict[str, int] = {}
    for row in dataset.iter_rows():
        record = ScoreRecord.from_dict(json.loads(row["record"]))
        track = record.track
        key = track["input"] if track else record.id
        expected[key] = track["count"] if track else 1
        received[key] = received.get(key, 0) + 1
        yield record
    for item in valid:
        if received.get(item.id, 0) < expected.get(item.id, 1):
            yield input_failed_record(
                item, WORKER_LOST,
                f"the worker processing this input died {plan.max_retries + 1} times (out of memory, or a "
                "crash in a native library?); see the Ray worker logs",
            )
