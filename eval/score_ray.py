"""Score raw videos end to end on Ray Data: decode, face tracks, mouth ROI, model, score.

One command instead of ``sf-prepare`` then ``sf-score-batch``, with the same scores and the same
JSONL records (see :mod:`.ray_pipeline` for the stages and the record's extra ``track`` field)::

    # on this machine (Ray started in-process, sized to it)
    sf-score-ray videos/ --path large_vox_iter5.pt --results-path out/

    # on a Ray cluster (`ray start --head` on one node, `ray start --address=HEAD:6379` on the others)
    sf-score-ray videos/ --path large_vox_iter5.pt --results-path out/ --address HEAD:6379

Inputs are a folder (searched recursively for videos) or a list file (one path per line), named
as ``sf-prepare`` names them; ``--labels`` (a SpeechForensics list or CSV) adds labels and
categories. On a cluster the inputs, the checkpoint, ``--results-path`` (written by the driver
only) and ``--roi-dir`` must be at the same paths on every node.

Output, under ``--results-path``: ``scores.jsonl`` (records appended as items finish),
``fingerprint.json`` (checkpoint content hash, layer, offsets, cap, precision, input transform,
the preprocessing settings of ``sf-prepare``, the verdict thresholds, offset-drift and
voice-activity settings, the reference set's content hash and the input), ``run.json`` and
``summary.json``.

Every record carries the verdict fields of ``sf-score-batch`` (``verdict``, ``reasons``,
``score_speech``, ``speech_seconds``, ``p_value``, ``drift``, ``provenance``, ...; see
:mod:`.verdict`), with the same options (``--reference``, ``--alpha``, ``--min-speech-seconds``,
``--min-frames``, ``--drift-*``, ``--vad-*``). ``--min-frames`` is the verdict's threshold, as in
``sf-score-batch``; ``sf-prepare``'s ``--min-frames`` is ``--prepare-min-frames`` here. The
records' ``provenance`` names the raw video as the input and the ROI and wav as the scored files
(their paths only with ``--roi-dir``; ``sf-verify`` re-scores records whose files were kept).
A rerun with the same settings skips the inputs whose every face track is scored and unchanged
and retries the others; other settings are refused, naming them, unless ``--overwrite``. With
``--roi-dir`` the mouth ROIs, wavs, landmarks and status records are kept there as ``sf-prepare``
writes them (with its settings record and a manifest ``<split>.tsv``); without it they live in a
scratch folder on the worker only while the clip is read.

Exit status: 0 when every input is scored, 1 otherwise, 2 on a usage error or refused settings;
130/143 on Ctrl-C/SIGTERM (the records written so far are kept: rerun to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import logging
import os
import pickle
import sys
import time
from argparse import Namespace
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

from sf_fairseq import resume
from sf_fairseq._logging import TIMED_LOG_FORMAT, command_logging
from sf_fairseq.data.batching import BatchLimits
from sf_fairseq.preprocess import prepare_engine

from . import lists
from .pipeline import add_scorer_arguments, load_scorer_from_arguments, precision_from_arguments
from .ray_pipeline import StageSettings, VideoItem, WorkerPlan, finished_inputs, plan_workers, read_videos, run_pipeline
from .results import OK, ResultWriter, latest_records
from .jobs import error_text, run_interruptible
from .batch_engine import accept_settings
from .verdict import VerdictConfig, add_verdict_arguments, verdict_config_from_arguments

logger = logging.getLogger(__name__)

LOCAL_OBJECT_STORE_MB = 512


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sf-score-ray",
        description="Score raw videos (decode, face tracks, mouth ROI, model, score) as one Ray Data pipeline, "
        "writing the records of sf-score-batch as items finish.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", help="folder searched recursively for videos, or a list file with one video path per line")
    p.add_argument("--root", help="folder that list paths (and ids) are relative to; unset: the list's folder")
    p.add_argument("--labels", help="SpeechForensics list or CSV giving labels (and categories) of the videos, "
                   "paths relative to --root or the input folder")
    p.add_argument("--category-rule", default="auto", choices=sorted(lists.CATEGORY_RULES),
                   help="how to infer a video's category from its id when --labels does not give it")
    add_scorer_arguments(p)
    p.add_argument("--results-path", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="if --results-path (or --roi-dir) holds outputs made with other settings, discard them "
                   "instead of refusing")
    batching = p.add_argument_group("model batches")
    batching.add_argument("--batch-size", type=int, default=8, help="clips per model call")
    batching.add_argument("--max-frames", type=int, default=None, help="cap on clips x longest stream per model call")
    batching.add_argument("--max-padding", type=float, default=BatchLimits.max_padding,
                          help="cap on the padding per model call, as a fraction of its padded frames")
    pre = p.add_argument_group("preprocessing (as sf-prepare; see its --help)")
    defaults = prepare_engine.PrepareOptions()
    pre.add_argument("--detect-every", type=int, default=defaults.detect_every,
                     help="run the face detector every N frames, follow faces with landmarks in between")
    pre.add_argument("--detect-size", type=int, default=defaults.detect_size,
                     help="longer side of the downscaled frame the detector sees")
    pre.add_argument("--upsample", type=int, default=defaults.upsample, help="detector pyramid upsamplings")
    pre.add_argument("--cnn-detector", action="store_true", help="try dlib's CNN detector where HOG finds nothing")
    pre.add_argument("--prepare-min-frames", type=int, default=defaults.min_frames,
                     help="inputs shorter than this many 25 fps frames fail as 'too_short' (sf-prepare's "
                     "--min-frames; --min-frames here is the verdict's threshold, as in sf-score-batch)")
    pre.add_argument("--min-track-fraction", type=float, default=defaults.min_track_fraction,
                     help="score the faces followed on at least this fraction of the frames")
    pre.add_argument("--keep-truncated", action="store_true",
                     help="score inputs sf-prepare calls 'truncated' instead of failing them")
    pre.add_argument("--roi-dir", help="keep the mouth ROIs, wavs, landmarks and status records here, laid out "
                     "as sf-prepare writes them; unset: not kept")
    pre.add_argument("--split", default="test", help="name of the manifest written in --roi-dir")
    cluster = p.add_argument_group("Ray")
    cluster.add_argument("--address", help="Ray cluster to use (e.g. HEAD:6379, or 'auto'); unset: start Ray "
                         "in this process, sized to this machine")
    cluster.add_argument("--cpu-workers", type=int, default=None,
                         help="preprocessing workers; unset: one per CPU the model workers leave")
    cluster.add_argument("--model-workers", type=int, default=None,
                         help="model workers; unset: one per GPU, or one on CPU")
    cluster.add_argument("--model-threads", type=int, default=None,
                         help="CPUs (torch threads) per model worker; unset: 1 with GPUs, else half the CPUs")
    cluster.add_argument("--max-retries", type=int, default=3,
                         help="restarts of a worker that dies, and retries of its items, before they are failed")
    cluster.add_argument("--object-store-mb", type=int, default=LOCAL_OBJECT_STORE_MB,
                         help="object store size of a local Ray (ignored with --address)")
    add_verdict_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def prepare_options(args: Namespace) -> prepare_engine.PrepareOptions:
    return prepare_engine.PrepareOptions(
        detect_every=args.detect_every, detect_size=args.detect_size, upsample=args.upsample,
        cnn_detector=args.cnn_detector, min_frames=args.prepare_min_frames,
        min_track_fraction=args.min_track_fraction,
    )


def input_fingerprint(args: Namespace) -> dict[str, Any]:
    """Identity of the run's input: the folder, or the list's content hash; root, labels, category rule."""
    source = Path(args.inputs)
    return {
        "source": os.path.abspath(source),
        "list_sha256": resume.file_sha256(source) if source.is_file() else None,
        "root": None if args.root is None else os.path.abspath(args.root),
        "labels_sha256": resume.file_sha256(args.labels) if args.labels else None,
        "category_rule": args.category_rule,
    }


def run_fingerprint(args: Namespace, precision: str, settings: StageSettings) -> dict[str, Any]:
    """Everything that changes the records: score and verdict settings as ``sf-score-batch``
    records them, ``sf-prepare``'s settings, and the input."""
    verdict: VerdictConfig = settings.verdict
    return {
        "checkpoint_sha256": resume.file_sha256(args.path),
        "layer": args.layer,
        "max_offset": settings.score.max_offset,
        "max_seconds": settings.score.max_seconds,
        "precision": precision,
        "input_settings": asdict(settings.inputs),
        "prepare": prepare_engine.settings_fingerprint(settings.prepare),
        "keep_truncated": settings.keep_truncated,
        "verdict_settings": asdict(verdict.settings),
        "drift_settings": asdict(verdict.drift),
        "speech_settings": verdict.speech.as_record(),
        "reference_sha256": None if verdict.reference_path is None else resume.file_sha256(verdict.reference_path),
        "input": input_fingerprint(args),
    }


@contextlib.contextmanager
def ray_session(address: str | None, object_store_mb: int) -> Iterator[None]:
    """Connect to ``address``, or start Ray in this process sized to this machine; a Ray
    already initialised in this process (tests, notebooks) is used as it is."""
    import ray

    if ray.is_initialized():
        yield
        return
    quiet = {"logging_level": logging.WARNING, "include_dashboard": False}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=os.cpu_count(), object_store_memory=object_store_mb * 1024 * 1024, **quiet)
    import ray.data  # configures its loggers when imported: quieten them after

    for name in ("ray", "ray.data"):  # Ray Data logs every dataset's plan and timing at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def cluster_plan(args: Namespace) -> WorkerPlan:
    import ray

    resources = ray.cluster_resources()
    plan = plan_workers(int(resources.get("CPU", 1)), int(resources.get("GPU", 0)), args.cpu_workers,
                        args.model_workers, args.model_threads, use_gpu=not args.cpu, max_retries=args.max_retries)
    wanted = plan.cpu_workers + plan.model_workers * plan.model_cpus
    if wanted > resources.get("CPU", 0):
        logger.warning("the workers ask for %d CPUs, the cluster has %g: some wait until others finish",
                       wanted, resources.get("CPU", 0))
    return plan


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(TIMED_LOG_FORMAT):
        return run_interruptible("sf-score-ray", run, args,
                                 f"the records written so far are kept in {args.results_path}: "
                                 "run the same command again to resume")


def run(args: Namespace) -> int:
    """:func:`main` after argument parsing (interruptions are handled there)."""
    out = Path(args.results_path).resolve()
    counts = (args.batch_size, args.detect_every, args.prepare_min_frames, args.cpu_workers or 1,
              args.model_workers or 1, args.model_threads or 1, args.max_retries + 1)
    if min(counts) < 1:
        print("error: --batch-size, --detect-every, --prepare-min-frames, --cpu-workers, --model-workers and "
              "--model-threads must be >= 1, --max-retries >= 0", file=sys.stderr)
        return 2
    try:
        outputs = [out] + ([args.roi_dir] if args.roi_dir else [])
        items = read_videos(args.inputs, args.root, args.labels, args.category_rule, exclude=outputs)
    except (OSError, lists.ListFormatError) as err:
        print(error_text(err), file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    try:
        with resume.exclusive_output(out / "scores.lock", f"scoring into {out / 'scores.jsonl'}", out):
            return score_all(args, items, out)
    except resume.RunLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SystemExit as refused:  # accept_settings refuses other settings this way
        print(refused.code, file=sys.stderr)
        return 2


def score_all(args: Namespace, items: list[VideoItem], out: Path) -> int:
    """Check the settings, score what is not done yet, print and write the summary."""
    try:
        verdict = verdict_config_from_arguments(args)
        # ``auto`` is resolved here, once, for the driver's device (its GPU when it has one): on a
        # cluster whose model workers have other devices, give --precision explicitly.
        precision = precision_from_arguments(args, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        # Read here (on CPU) for the settings and an early error; the model workers load their own.
        scorer = load_scorer_from_arguments(args, args.path, torch.device("cpu"), precision=precision)
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # missing/unsafe checkpoint, bad reference
        raise SystemExit(error_text(err)) from err
    roi_dir = None if args.roi_dir is None else Path(args.roi_dir).resolve()
    settings = StageSettings(prepare_options(args), scorer.settings, scorer.options,
                             None if roi_dir is None else str(roi_dir), args.keep_truncated, verdict)
    del scorer
    fingerprint = run_fingerprint(args, precision, settings)
    scores = out / "scores.jsonl"
    accept_settings(scores, out / "fingerprint.json", fingerprint, args.overwrite)
    if roi_dir is not None:
        roi_dir.mkdir(parents=True, exist_ok=True)
        try:
            prepare_engine.prepare_output_folder(roi_dir, settings.prepare, args.overwrite)
        except resume.SettingsMismatch as err:
            raise SystemExit(f"error: {err}") from None
        resume.remove_stale_temporaries(roi_dir)
    limits = BatchLimits(args.batch_size, args.max_frames, args.max_padding)

    start = time.perf_counter()
    counts = {"scored": 0, "failed": 0, "skipped": 0}
    with ResultWriter(scores) as writer:
        done = finished_inputs(items, latest_records([scores]))
        pending = [item for item in items if item.id not in done]
        counts["skipped"] = len(items) - len(pending)
        if counts["skipped"]:
            logger.info("resuming: %d of %d inputs already scored", counts["skipped"], len(items))
        with ray_session(args.address, args.object_store_mb):
            plan = cluster_plan(args)
            logger.info("%d preprocessing workers, %d model workers (%s, %d CPUs each)", plan.cpu_workers,
                        plan.model_workers, "GPU" if plan.model_gpus else "CPU", plan.model_cpus)
            run_info = {
                "checkpoint": os.path.abspath(args.path), "checkpoint_sha256": fingerprint["checkpoint_sha256"],
                "layer": args.layer, "input": os.path.abspath(args.inputs), "max_offset": settings.score.max_offset,
                "max_seconds": settings.score.max_seconds, "precision": precision,
                "device": "cuda" if plan.model_gpus else "cpu", "input_settings": asdict(settings.inputs),
                "prepare": asdict(settings.prepare), "roi_dir": settings.roi_dir, "workers": asdict(plan),
                **verdict.provenance(), "speech_settings": verdict.speech.as_record(),
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            resume.atomic_write_json(out / "run.json", run_info)
            with tqdm(unit="track", disable=args.no_progress) as bar:
                for record in run_pipeline(pending, settings, args, precision, limits, plan):
                    writer.write(record)
                    counts["scored" if record.status == OK else "failed"] += 1
                    bar.update()
                    if record.status != OK:
                        logger.warning("%s: %s: %s", record.id, record.error_type, record.error)
    seconds = time.perf_counter() - start
    if roi_dir is not None:
        prepare_engine.write_split_manifest(roi_dir, args.split, [it.id for it in items if it.problem is None],
                                     args.keep_truncated)
    return summarise(items, scores, counts, seconds, out)


def summarise(items: list[VideoItem], scores: Path, counts: dict[str, int], seconds: float, out: Path) -> int:
    latest = latest_records([scores])
    n_ok = len(finished_inputs(items, latest))
    verdicts = Counter(str(record.verdict) for record in latest.values())
    summary = {**counts, "inputs": len(items), "ok": n_ok, "not_ok": len(items) - n_ok,
               "records": len(latest), "verdicts": dict(sorted(verdicts.items())), "seconds": round(seconds, 2)}
    print(f"{len(items)} inputs: {counts['scored']} tracks scored now, {counts['skipped']} inputs already done, "
          f"{counts['failed']} failed; {n_ok} inputs fully scored; {seconds:.1f} s")
    print("verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))
    resume.atomic_write_json(out / "summary.json", summary)
    return 0 if n_ok == len(items) else 1


if __name__ == "__main__":
    raise SystemExit(main())
