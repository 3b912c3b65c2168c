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
  (:class:`sf_fairseq.records.ScoreRecord`), appended and flushed as soon as the item is scored or fails, in the
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
see :class:`sf_fairseq.records.Transcripts`). A clip that cannot be transcribed keeps its score and records the error
in that field; a rerun transcribes the clips whose records lack transcripts from this model.
The report then adds the mean word disagreement per category and its AUC as a detector.

A summary is printed at the end (errors and progress go to stderr); the exit status is 0 when
every item is scored, 1 otherwise. Memory stays bounded: clips are loaded one at a time by
``--num-workers`` loader processes and records go straight to disk.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import pickle
import time
from argparse import Namespace
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sf_fairseq import resume
from sf_fairseq._logging import TIMED_LOG_FORMAT, command_logging
from sf_fairseq.data.batching import BatchLimits

from . import lists
from .batch_engine import accept_settings, add_transcribe_arguments, load_transcriber, score_fingerprint, score_items
from .jobs import error_text, run_interruptible
from .metrics import Calibration
from .pipeline import add_scorer_arguments, load_scorer_from_arguments, pick_device
from .report import write_report
from .results import OK, ResultWriter, latest_records
from .scorer_settings import ScorerSettings
from .verdict import add_verdict_arguments, verdict_config_from_arguments

logger = logging.getLogger(__name__)


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(TIMED_LOG_FORMAT):
        return run_interruptible("sf-score-batch", run, args,
                                 f"the records written so far are kept in {args.results_path}: "
                                 "run the same command again to resume")


@dataclass(frozen=True)
class BatchJob:
    """An ``sf-score-batch`` run over a list file, for stages that call it as a function
    (:func:`score_list`); every option it does not name keeps its command-line default (no
    reference set, calibration or transcription; unsharded).

    Attributes:
        list_path: SpeechForensics ``test_list.txt`` or CSV; ``data_root`` the mouth-ROI folder
            its paths are relative to; ``category_rule`` how categories are inferred from paths.
        results_path: the output directory.
        scorer: the checkpoint and score settings.
        report: write the metrics report when done.
    """

    list_path: str | os.PathLike
    results_path: str | os.PathLike
    scorer: ScorerSettings
    data_root: str | os.PathLike | None = None
    category_rule: str = "auto"
    report: bool = False
    n_boot: int = 1000
    batch_size: int = 8
    num_workers: int = 2
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class BatchSummary:
    """What :func:`score_list` did: the command's exit status (0: every item ok, 1: some not,
    130/143: interrupted) and ``summary<shard>.json``'s content (None when interrupted)."""

    exit_status: int
    summary: dict[str, Any] | None


def score_list(job: BatchJob) -> BatchSummary:
    """Run ``sf-score-batch`` on ``job`` as :func:`main` runs it from its options (same records,
    fingerprints, report and summary; a bad input or refused settings raise ``SystemExit``
    with the command's message)."""
    parser = build_parser()
    args = Namespace()
    for action in parser._actions:  # every option's default, as parse_args sets them
        if action.default is not argparse.SUPPRESS and not hasattr(args, action.dest):
            setattr(args, action.dest, action.default)
    scorer = job.scorer
    vars(args).update(
        list=os.fspath(job.list_path), data_root=None if job.data_root is None else os.fspath(job.data_root),
        category_rule=job.category_rule, results_path=os.fspath(job.results_path),
        path=os.fspath(scorer.checkpoint), **vars(scorer.arguments()), report=job.report, n_boot=job.n_boot,
        batch_size=job.batch_size, num_workers=job.num_workers, overwrite=job.overwrite, no_progress=not job.progress,
    )
    status = run_interruptible("sf-score-batch", run, args,
                               f"the records written so far are kept in {args.results_path}: "
                               "run the same stage again to resume")
    summary_path = Path(args.results_path) / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if status in (0, 1) else None
    return BatchSummary(status, summary)


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
    try:
        with resume.exclusive_output(out / f"scores{suffix}.lock", f"scoring into {scores}", out):
            return score_shard(args, items, out, suffix)
    except resume.RunLocked as err:
        raise SystemExit(f"error: {err}") from None


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
