"""One command per benchmark: the dataset's own metadata in, the paper-style table and the
challenge files out.

::

    sf-benchmark --dataset avdeepfake1m --root /data/AV-Deepfake1M --path large_vox_iter5.pt \\
        --out runs/av1m_val --bf16

Stages, each resumable (rerun the same command after an interruption):

1. **read** the dataset with its reader (:mod:`.benchmarks.readers`); entries without a video
   (or excluded by the protocol) are listed in ``<out>/dataset.json`` and counted in the report;
2. **prepare** the raw videos into 25 fps mouth ROIs and 16 kHz wavs with
   :mod:`sf_fairseq.preprocess.prepare_engine` (``<out>/prepared``; its settings record refuses a rerun
   with other settings); SpeechForensics lists are already prepared and skip this;
3. **score** with :func:`.batch_engine.score_items` into ``<out>/scores/scores[.<i>-of-<n>].jsonl``
   (the settings fingerprint of :mod:`.score_batch` refuses a rerun with another checkpoint or
   score setting unless ``--overwrite``); for AV-Deepfake1M and LAV-DF every record also keeps
   ``frame_agreement``, the per-frame lip-speech agreement at the clip's best offset;
4. **report**, once every shard has finished (or with ``--report-only``): ``<out>/report/``
   ``report.md`` and ``report.json`` (AUC overall and per category with 95% bootstrap intervals,
   AP, EER, what was left out and why, what the numbers compare with) and, for AV-Deepfake1M and
   LAV-DF, ``challenge/``: ``classification.txt`` and ``localisation.json`` in the official SDK's
   formats, ``metadata.json`` (the scored files' labels, for the SDK), and localisation AP/AR in
   the report (:mod:`.benchmarks.localisation`, proposals from :mod:`.benchmarks.proposals`;
   with ``--speech-gating``, only on frames where :mod:`.speech`'s voice activity finds speech).

``--num-shards N --shard-id I`` splits the items (every I-th); run the shards anywhere that
shares ``--out``, then once more with ``--report-only``. Items that cannot be prepared or scored
get a failed record naming the reason; the exit status is 0 when every item of the shard is
scored, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import os
import pickle
from argparse import Namespace
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sf_fairseq import resume
from sf_fairseq._logging import TIMED_LOG_FORMAT, command_logging
from sf_fairseq.preprocess import prepare_engine
from sf_fairseq.records import PrepareRecord, ScoreRecord, read_prepare_record

from . import lists, speech
from .batch_engine import accept_settings, failed_record, score_fingerprint, score_items
from .benchmarks import challenge, localisation, readers
from .benchmarks import report as bench_report
from .benchmarks.items import BenchmarkItem, BenchmarkSet, MetadataError
from .benchmarks.proposals import ProposalSettings, frame_agreement, propose_segments
from .jobs import error_text, run_interruptible
from .pipeline import ClipResult, Scorer, add_scorer_arguments, load_scorer_from_arguments, pick_device
from .results import ResultWriter, latest_records

logger = logging.getLogger(__name__)

DATASETS = tuple(readers.READERS)
DEFAULT_SPLITS = {"ffpp": "test", "kodf": "validation", "avdeepfake1m": "val", "lavdf": "test"}
# Datasets with ground-truth segments: (metadata key of the segments, AP IoU thresholds, AR N).
LOCALISATION = {
    "avdeepfake1m": ("fake_segments", localisation.AP_IOU_THRESHOLDS, localisation.AR_N_PROPOSALS),
    "lavdf": ("fake_periods", (0.5, 0.75, 0.95), (100, 50, 20, 10)),
}
FRAME_FIELD = "frame_agreement"


# ---- scoring with per-frame agreement ---------------------------------------------------------


class AgreementResult(ClipResult):
    """A :class:`ClipResult` whose record also keeps the per-frame agreement at the best offset."""

    def as_record(self) -> dict[str, Any]:
        agreement = frame_agreement(self.sims, self.best_offset)
        return {**super().as_record(), FRAME_FIELD: [round(float(x), 5) for x in agreement]}


class AgreementScorer(Scorer):
    """A :class:`Scorer` returning :class:`AgreementResult` (same scores)."""

    def score_clips(self, clips):
        return [AgreementResult(**{f.name: getattr(r, f.name) for f in fields(r)}) for r in super().score_clips(clips)]


# ---- read -------------------------------------------------------------------------------------


def read_dataset(args: Namespace) -> BenchmarkSet:
    """The dataset's items and problems, from the options."""
    root = args.root
    if args.dataset == "fakeavceleb":
        return readers.read_fakeavceleb(root, args.metadata)
    if args.dataset == "ffpp":
        methods = args.methods or readers.FFPP_DEFAULT_METHODS
        return readers.read_ffpp(root, args.split, args.compression, methods, args.ffpp_splits, args.audio_dir)
    if args.dataset == "kodf":
        return readers.read_kodf(root, args.split, args.methods or readers.KODF_DEFAULT_METHODS)
    if args.dataset == "avdeepfake1m":
        return readers.read_avdeepfake1m(root, args.split)
    if args.dataset == "lavdf":
        return readers.read_lavdf(root, args.split)
    if args.list is None:
        raise SystemExit("error: --dataset speechforensics needs --list (its test_list.txt; --root = the mouth folder)")
    return readers.read_speechforensics(args.list, root)


def dataset_record(found: BenchmarkSet, args: Namespace) -> dict[str, Any]:
    return {
        "dataset": found.dataset,
        "root": os.path.abspath(args.root),
        "split": args.split,
        "sources": found.sources,
        "n_items": len(found.items),
        "problems": [vars(p) for p in found.problems],
    }


# ---- prepare ----------------------------------------------------------------------------------


def prepare_id(item: BenchmarkItem) -> str:
    """Output name of an item in the prepare folder (its id without the extension)."""
    return Path(item.id).with_suffix("").as_posix()


def _prepared(record: PrepareRecord | None, item: prepare_engine.InputItem, out_dir: Path) -> bool:
    """Whether a prepare record is final: not an ``error`` (retried), made from the input as it
    is now (size and modification time), and its files present."""
    if record is None or record.status == "error":
        return False
    recorded = {k: record[k] for k in ("input_size", "input_mtime_ns") if k in record}
    if prepare_engine.input_identity(item.path) != recorded:
        return False
    files = [record.audio] + [t["video"] for t in record.tracks or ()]
    return all((out_dir / f).is_file() for f in files if f)


def prepare_items(
    items: Sequence[BenchmarkItem], out_dir: Path, options: prepare_engine.PrepareOptions, workers: int,
    overwrite: bool,
) -> dict[str, PrepareRecord]:
    """Prepare the raw videos of ``items`` (skipping finished ones); ``{item id: record}``."""
    raw = [it for it in items if not it.prepared]
    if not raw:
        return {}
    by_prepare_id: dict[str, str] = {}
    for item in raw:
        other = by_prepare_id.setdefault(prepare_id(item), item.id)
        if other != item.id:
            raise SystemExit(f"error: {other!r} and {item.id!r} would share the prepared name {prepare_id(item)!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    prepare_engine.prepare_output_folder(out_dir, options, overwrite)
    resume.remove_stale_temporaries(out_dir)
    records, todo = {}, []
    for item in raw:
        job = prepare_engine.InputItem(prepare_id(item), item.video)
        record = read_prepare_record(out_dir, job.id)
        if _prepared(record, job, out_dir):
            records[item.id] = record
        else:
            todo.append(job)
    if todo:
        logger.info("preparing %d videos (%d already done)", len(todo), len(raw) - len(todo))
    for written in prepare_engine.process_items(todo, out_dir, options, workers):
        record = PrepareRecord.from_dict(written)
        records[by_prepare_id[record.id]] = record
    return records


def eval_item(
    item: BenchmarkItem, record: PrepareRecord | Mapping[str, Any] | None, out_dir: Path
) -> tuple[lists.EvalItem, tuple[str, str] | None]:
    """The scorer's input for ``item`` and, when it cannot be scored, ``(error type, why)``
    (``record``: its prepare record, read through the mapping view)."""
    if item.prepared:
        return lists.EvalItem(item.id, item.video, item.audio or "", item.label, item.category), None
    tracks = (record or {}).get("tracks") or []
    status = (record or {}).get("status", "missing")
    # A separate audio (FF++) makes a silent video usable: its ROI is written all the same.
    usable = status == "ok" or (item.audio is not None and status == "no_audio")
    if not usable or not tracks:
        reason = f"{item.video}: prepare gave {status}: {(record or {}).get('reason', '')}".rstrip(": ")
        return lists.EvalItem(item.id, item.video, "", item.label, item.category), (f"prepare_{status}", reason)
    video = str(out_dir / tracks[0]["video"])  # the most-seen face
    audio = item.audio if item.audio is not None else str(out_dir / record["audio"])
    return lists.EvalItem(item.id, video, audio, item.label, item.category), None


# ---- score ------------------------------------------------------------------------------------


def score_stage(args: Namespace, found: BenchmarkSet, mine: list[BenchmarkItem], out: Path, suffix: str) -> int:
    """Prepare and score this shard's items (one process per shard at a time); returns the
    number not scored successfully."""
    scores_dir = out / "scores"
    scores_dir.mkdir(parents=True, exist_ok=True)
    scores = scores_dir / f"scores{suffix}.jsonl"
    try:
        with resume.exclusive_output(scores_dir / f"scores{suffix}.lock", f"preparing and scoring into {scores}",
                                     scores_dir):
            return _score_locked(args, found, mine, out, scores, suffix)
    except resume.RunLocked as err:
        raise SystemExit(f"error: {err}") from None


def _score_locked(
    args: Namespace, found: BenchmarkSet, mine: list[BenchmarkItem], out: Path, scores: Path, suffix: str
) -> int:
    prepared_dir = out / "prepared"
    options = prepare_engine.PrepareOptions(detect_every=args.detect_every, cnn_detector=args.cnn_detector)
    try:
        records = prepare_items(mine, prepared_dir, options, args.prepare_workers, args.overwrite)
    except resume.SettingsMismatch as err:
        raise SystemExit(f"error: {err}") from None
    inputs = [eval_item(item, records.get(item.id), prepared_dir) for item in mine]

    # What the items come from (metadata content, root, reader options, shard): its hash keys
    # the settings fingerprint, so scores of another dataset or selection are never mixed in.
    identity = scores.parent / f"dataset{suffix}.json"
    resume.atomic_write_json(identity, {
        "dataset": args.dataset, "root": os.path.abspath(args.root), "split": args.split,
        "sources_sha256": {source: resume.file_sha256(source) for source in found.sources},
        "options": {k: getattr(args, k) for k in ("metadata", "compression", "methods", "ffpp_splits", "audio_dir")},
        "shard": [args.shard_id, args.num_shards],
    })
    device = pick_device(args.cpu)
    try:
        base = load_scorer_from_arguments(args, args.path, device)
        fingerprint_args = Namespace(**{**vars(args), "list": str(identity), "data_root": None,
                                        "category_rule": "none", "transcribe": None, "calibration": None})
        fingerprint = score_fingerprint(fingerprint_args, base, None)
    except (OSError, ValueError, pickle.UnpicklingError) as err:
        raise SystemExit(error_text(err)) from err
    fingerprint["frame_agreement"] = args.dataset in LOCALISATION
    accept_settings(scores, scores.parent / f"fingerprint{suffix}.json", fingerprint, args.overwrite)
    scorer = AgreementScorer(base.encoder, base.settings, base.options) if args.dataset in LOCALISATION else base

    previous = latest_records([scores]) if scores.is_file() else {}
    with ResultWriter(scores) as writer:
        for item, failure in inputs:
            if failure is not None and (item.id not in previous or previous[item.id].error != failure[1]):
                writer.write(failed_record(item, *failure))
        ready = [item for item, failure in inputs if failure is None]
        counts = score_items(ready, scorer, writer, args.batch_size, args.max_frames, args.num_workers,
                             progress=not args.no_progress)
    latest = latest_records([scores])
    n_ok = sum(it.id in latest and latest[it.id].ok for it in mine)
    logger.info("%d items: %d scored now, %d already done, %d failed, %d not prepared; %d ok in total",
                len(mine), counts["scored"], counts["skipped"], counts["failed"],
                sum(failure is not None for _, failure in inputs), n_ok)
    return len(mine) - n_ok


# ---- report -----------------------------------------------------------------------------------


def row_speech(audio_speech: np.ndarray, best_offset: int, n_rows: int) -> np.ndarray:
    """Speech mask of the agreement rows: row ``i`` pairs the lips at ``i`` with the audio frame
    ``i + k*`` (the clip's best offset), so it is speech when that audio frame is."""
    index = np.arange(n_rows) + best_offset
    valid = (index >= 0) & (index < len(audio_speech))
    mask = np.zeros(n_rows, dtype=bool)
    mask[valid] = np.asarray(audio_speech, dtype=bool)[index[valid]]
    return mask


def localisation_outputs(
    dataset: str,
    items: Sequence[BenchmarkItem],
    records: dict[str, ScoreRecord],
    out: Path,
    settings: ProposalSettings,
    speech_settings: speech.SpeechSettings | None = None,
) -> dict[str, Any] | None:
    """Write the challenge files; returns the localisation metrics (None without labels).

    With ``speech_settings``, proposals are gated by voice activity (Silero VAD of each clip's
    wav, :mod:`.speech`); a clip whose wav cannot be read is proposed ungated (counted)."""
    key, ap_thresholds, ar_n = LOCALISATION[dataset]
    scored = [it for it in items if it.id in records and records[it.id].ok]
    proposals, ungated = {}, 0
    for it in scored:
        record = records[it.id]
        agreement = record.frame_agreement
        if not isinstance(agreement, list):
            raise SystemExit(f"error: the record of {it.id} has no {FRAME_FIELD} (scored by another command?)")
        mask = None
        if speech_settings is not None:
            try:
                audio_speech = speech.analyse_wav(record.audio, speech_settings, max_seconds=None).speech
                mask = row_speech(audio_speech, record.best_offset, len(agreement))
            except (OSError, ValueError) as err:
                logger.warning("%s: no voice activity (%s); proposals not gated", it.id, err)
                ungated += 1
        proposals[it.id] = propose_segments(agreement, settings, mask)  # a scored clip has frames: never empty
    folder = out / "challenge"
    challenge.write_classification(folder / "classification.txt", {it.id: records[it.id].score for it in scored})
    challenge.write_localisation(folder / "localisation.json", proposals)
    labelled = [it for it in scored if it.label is not None and it.fake_segments is not None]
    if not labelled:
        return None
    challenge.write_metadata_subset(folder / "metadata.json", [(it.id, it.fake_segments) for it in labelled], key)
    rows = {it.id: [p.as_row() for p in proposals[it.id]] for it in labelled}
    results = localisation.ap_ar_1d(rows, [(it.id, it.fake_segments) for it in labelled], 1.0, ap_thresholds, ar_n)
    score = localisation.challenge_score(results)

    def finite(x: float) -> float | None:  # AP is NaN without any fake segment: JSON null
        return None if math.isnan(x) else x

    return {"n_files": len(labelled), "ap": {t: finite(v) for t, v in results["ap"].items()},
            "ar": results["ar"], "score": finite(score), "proposals": vars(settings),
            "speech_gating": None if speech_settings is None else {**speech_settings.as_record(), "ungated": ungated}}


def report_stage(args: Namespace, found: BenchmarkSet, out: Path) -> dict[str, Any]:
    scores_dir = out / "scores"
    records = latest_records([scores_dir]) if any(scores_dir.glob("*.jsonl")) else {}
    loc = None
    if args.dataset in LOCALISATION:
        gating = speech.SpeechSettings() if args.speech_gating else None
        loc = localisation_outputs(args.dataset, found.items, records, out, ProposalSettings(), gating)
    summary = bench_report.summarise(args.dataset, found.items, found.problems, records, args.n_boot, args.seed, loc)
    header = {"root": os.path.abspath(args.root), "split": args.split, "checkpoint": os.path.abspath(args.path),
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    resume.atomic_write_json(out / "report" / "report.json", {**header, **summary})
    resume.atomic_write_text(out / "report" / "report.md", bench_report.markdown(summary, header))
    return summary


# ---- CLI --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sf-benchmark",
        description="Evaluate a checkpoint on a benchmark from the dataset's own metadata: prepare, score, "
        "report (paper-style table; AV-Deepfake1M / LAV-DF challenge files). Resumable and shardable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="dataset root as downloaded (speechforensics: the mouth-ROI folder)")
    p.add_argument("--out", required=True, help="output directory (prepared clips, scores, report)")
    p.add_argument("--split", help="split to evaluate (default: ffpp test, kodf validation, avdeepfake1m val, "
                   "lavdf test; avdeepfake1m test/testA/testB: challenge files only)")
    p.add_argument("--list", help="speechforensics: its test_list.txt")
    p.add_argument("--metadata", help="fakeavceleb: meta_data.csv (default <root>/meta_data.csv)")
    p.add_argument("--compression", default="c23", choices=readers.FFPP_COMPRESSIONS, help="ffpp: compression level")
    p.add_argument("--methods", nargs="+", help="ffpp: manipulation methods (default the four of FF++); "
                   "kodf: models (default all but fsgan, as SpeechForensics)")
    p.add_argument("--ffpp-splits", help="ffpp: the official <split>.json (default <root>/splits/<split>.json)")
    p.add_argument("--audio-dir", help="ffpp: <NNN>.wav (16 kHz mono) per original sequence; fakes use their "
                   "target's (FF++ videos have no sound)")
    add_scorer_arguments(p)
    p.add_argument("--batch-size", type=int, default=8, help="clips per model call")
    p.add_argument("--max-frames", type=int, default=None, help="cap on clips x longest clip (frames) per call")
    p.add_argument("--num-workers", type=int, default=2, help="clip loading processes")
    p.add_argument("--prepare-workers", type=int, default=1, help="video preparation processes")
    p.add_argument("--detect-every", type=int, default=prepare_engine.PrepareOptions.detect_every,
                   help="prepare: run the face detector every N frames")
    p.add_argument("--cnn-detector", action="store_true", help="prepare: dlib's CNN face detector")
    p.add_argument("--num-shards", type=int, default=1, help="split the items into this many shards")
    p.add_argument("--shard-id", type=int, default=0, help="which shard this run prepares and scores")
    p.add_argument("--report-only", action="store_true", help="only write the report from the scores present")
    p.add_argument("--speech-gating", action="store_true", help="avdeepfake1m/lavdf: propose fake segments on "
                   "speech frames only (Silero VAD of every scored wav at report time, ~0.1-0.3 s of CPU per "
                   "10 s clip)")
    p.add_argument("--overwrite", action="store_true", help="discard prepared clips or scores made with other settings")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: Namespace) -> int:
    if not 0 <= args.shard_id < args.num_shards:
        raise SystemExit(f"error: --shard-id must be in [0, {args.num_shards})")
    if args.split is None:
        args.split = DEFAULT_SPLITS.get(args.dataset)
    if args.dataset == "ffpp" and args.audio_dir is None and not args.report_only:
        raise SystemExit("error: --dataset ffpp needs --audio-dir: FaceForensics++ videos have no sound; give "
                         "<NNN>.wav per original sequence (SpeechForensics' README says where to get them)")
    try:
        found = read_dataset(args)
    except (OSError, MetadataError, ValueError, lists.ListFormatError) as err:
        raise SystemExit(error_text(err)) from err
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resume.atomic_write_json(out / "dataset.json", dataset_record(found, args))
    for reason, n in sorted(_count(p.reason for p in found.problems).items()):
        logger.warning("%d metadata entries without an item: %s (see %s)", n, reason, out / "dataset.json")
    missing = 0
    if not args.report_only:
        suffix = "" if args.num_shards == 1 else f".{args.shard_id}-of-{args.num_shards}"
        mine = found.items[args.shard_id :: args.num_shards]
        missing = score_stage(args, found, mine, out, suffix)
        scored = latest_records([out / "scores"])
        if args.num_shards > 1 and any(it.id not in scored for it in found.items):
            print(f"shard {args.shard_id} done; run with --report-only once every shard has finished")
            return 1 if missing else 0
    summary = report_stage(args, found, out)
    overall = summary["overall"]
    if "auc" in overall:
        name = f"{args.dataset}{' ' + args.split if args.split else ''}"
        print(f"{name}: AUC {overall['auc']:.4f} on {summary['n_used']} items "
              f"({overall['n_real']} real, {overall['n_fake']} fake); report in {out / 'report' / 'report.md'}")
    else:
        print(f"{args.dataset}: no AUC ({overall.get('note', 'no scored items')}); report in {out / 'report'}")
    if summary.get("localisation"):
        loc = summary["localisation"]
        values = [(f"AP@{t}", v) for t, v in loc["ap"].items()] + [(f"AR@{n}", v) for n, v in loc["ar"].items()]
        print("localisation: " + ", ".join(f"{name} {'n/a' if v is None else f'{v:.4f}'}" for name, v in values))
    return 1 if missing else 0


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(TIMED_LOG_FORMAT):
        return run_interruptible("sf-benchmark", run, args, "rerun the same command to resume")


if __name__ == "__main__":
    raise SystemExit(main())
