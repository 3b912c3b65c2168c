"""Raw video to score: videos/s end to end with sf-score-ray (Ray Data) and with the two-step
path (sf-prepare, then sf-score-batch), per-stage rates, and the worker sizing rule.

Generates ``--videos`` synthetic talking faces (the corpus generator's real clips, 2-5 s) unless
``--inputs`` names a folder of videos, then measures:

* **preprocessing per CPU worker** ``R_prep``: decode, face tracks, mouth ROI, wav and the clip
  inputs (:class:`~sf_fairseq.eval.ray_pipeline.PrepareStage`'s work) for every video in this
  process on one thread, videos/s;
* **model per model worker** ``R_model``: length-bucketed :meth:`Scorer.score_clips` on those clips
  (GPU when present, else CPU with ``--model-threads`` threads), after one warm-up batch, videos/s;
* **end to end**: ``sf-prepare --workers W`` then ``sf-score-batch`` (two step), and
  ``sf-score-ray`` with W preprocessing workers and one model worker on a local Ray, videos/s
  (Ray's start-up reported apart).

The sizing rule follows: a model worker keeps ``ceil(R_model / R_prep)`` preprocessing workers
busy; with C CPUs for preprocessing, ``min(C * R_prep, M * R_model)`` videos/s is the ceiling
for M model workers. It prints the machine (CPU model and capability, GPU) with the figures, and
writes them as JSON with ``--json``::

    python benchmarks/bench_ray.py --path large_vox_iter5.pt --videos 32
    python benchmarks/bench_ray.py --path ../shared/fixtures/avhubert_tiny/checkpoint.pt --videos 1  # smoke
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import torch

from sf_fairseq.eval import score_batch, score_ray
from sf_fairseq.data.batching import BatchLimits, length_batches
from sf_fairseq.eval.encode import cpu_model_name
from sf_fairseq.eval.pipeline import load_scorer_from_arguments, pick_device
from sf_fairseq.eval.ray_pipeline import PrepareStage, StageSettings, VideoItem, read_videos
from sf_fairseq.preprocess import prepare, prepare_engine
from sf_fairseq.preprocess.synthetic import corpus_engine
from sf_fairseq.preprocess.synthetic.clips import render_frames, write_mp4


def make_videos(folder: Path, n: int, size: tuple[int, int], seed: int) -> None:
    """``n`` real synthetic clips (espeak-ng speech, short sentences) under ``folder``."""
    for index in range(n):
        plan = corpus_engine.source_plan(seed, "test", index, size, quick=True, recorded_fraction=0.0)
        write_mp4(folder / f"v{index:04d}.mp4", render_frames(plan), plan.audio, size)


def machine() -> dict[str, Any]:
    return {
        "date": _dt.date.today().isoformat(),
        "cpu": cpu_model_name(),
        "cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def stage_rates(items: list[VideoItem], args: argparse.Namespace) -> dict[str, float]:
    """Preprocessing videos/s on one thread, and model videos/s of one model worker."""
    device = pick_device(args.cpu)
    scorer = load_scorer_from_arguments(args, args.path, device)
    settings = StageSettings(prepare_engine.PrepareOptions(), scorer.settings, scorer.options)
    torch.set_num_threads(1)
    stage = PrepareStage(settings)  # sets OpenCV and torch to one thread, as in a worker
    start = time.perf_counter()
    prepared = [stage.prepare(item) for item in items]
    prep_seconds = time.perf_counter() - start
    clips = [clip for tracks in prepared for _, clip in tracks if clip is not None]
    if not clips:
        raise SystemExit("no video could be preprocessed; nothing to measure")
    video_seconds = sum(c.video.shape[0] for c in clips) / 25.0

    torch.set_num_threads(args.model_threads)
    cv2.setNumThreads(args.model_threads)
    lengths = [max(c.video.shape[0], c.audio.shape[0]) for c in clips]
    batches = length_batches(lengths, BatchLimits(args.batch_size))
    scorer.score_clips([clips[i] for i in batches[0]])  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        scorer.score_clips([clips[i] for i in batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    model_seconds = time.perf_counter() - start
    return {
        "prep_videos_per_s": len(items) / prep_seconds,
        "prep_video_seconds_per_s": video_seconds / prep_seconds,
        "model_videos_per_s": len(clips) / model_seconds,
        "model_device": str(device),
        "mean_video_seconds": video_seconds / len(clips),
    }


def two_step(inputs: Path, args: argparse.Namespace, work: Path) -> float:
    """Seconds for sf-prepare (``--cpu-workers`` processes) then sf-score-batch."""
    start = time.perf_counter()
    prepare.main([str(inputs), str(work / "prepared"), "--workers", str(args.cpu_workers)])
    batch = [str(work / "prepared"), "--path", args.path, "--results-path", str(work / "two_step"),
             "--batch-size", str(args.batch_size), "--num-workers", "2", "--no-progress"]
    score_batch.main(batch + (["--cpu"] if args.cpu else []))
    return time.perf_counter() - start


def ray_run(inputs: Path, args: argparse.Namespace, work: Path) -> tuple[float, float]:
    """(Ray start-up seconds, sf-score-ray seconds) on a local Ray."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), object_store_memory=score_ray.LOCAL_OBJECT_STORE_MB * 1024 * 1024,
             include_dashboard=False, logging_level=logging.WARNING)
    started = time.perf_counter()
    try:
        score_ray.main([str(inputs), "--path", args.path, "--results-path", str(work / "ray"),
                        "--cpu-workers", str(args.cpu_workers), "--model-workers", "1",
                        "--model-threads", str(args.model_threads), "--batch-size", str(args.batch_size),
                        "--no-progress"] + (["--cpu"] if args.cpu else []))
        return started - start, time.perf_counter() - started
    finally:
        ray.shutdown()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--path", required=True, help="checkpoint (LARGE for meaningful model rates)")
    p.add_argument("--inputs", help="folder of videos to use instead of generated ones")
    p.add_argument("--videos", type=int, default=16, help="synthetic videos to generate")
    p.add_argument("--size", type=int, nargs=2, default=(320, 320), metavar=("W", "H"), help="their frame size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true", help="model on CPU even if a GPU is available")
    p.add_argument("--cpu-workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="preprocessing workers of both end-to-end runs")
    p.add_argument("--model-threads", type=int, default=1, help="torch threads of a CPU model worker")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--skip-end-to-end", action="store_true", help="per-stage rates only")
    p.add_argument("--json", help="also write the figures here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The scorer options of the scoring commands, at their defaults.
    scorer_defaults = score_ray.build_parser().parse_args(["x", "--path", args.path, "--results-path", "x"])
    args = argparse.Namespace(**{**vars(scorer_defaults), **vars(args)})
    logging.basicConfig(level=logging.WARNING, force=True)
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        work = Path(tmp)
        inputs = Path(args.inputs) if args.inputs else work / "videos"
        if not args.inputs:
            inputs.mkdir()
            make_videos(inputs, args.videos, tuple(args.size), args.seed)
        items = [item for item in read_videos(inputs) if item.problem is None]
        figures: dict[str, Any] = {"machine": machine(), "videos": len(items), "cpu_workers": args.cpu_workers,
                                   "model_threads": args.model_threads, "batch_size": args.batch_size}
        figures.update(stage_rates(items, args))
        figures["cpu_workers_per_model_worker"] = math.ceil(figures["model_videos_per_s"]
                                                            / figures["prep_videos_per_s"])
        if not args.skip_end_to_end:
            seconds = two_step(inputs, args, work)
            figures["two_step_videos_per_s"] = len(items) / seconds
            ray_start, seconds = ray_run(inputs, args, work)
            figures["ray_start_seconds"] = ray_start
            figures["ray_videos_per_s"] = len(items) / seconds
    m = figures["machine"]
    print(f"{m['date']}, {m['cpu']} ({m['cpus']} CPUs, {m['cpu_capability']}), GPU: {m['gpu'] or 'none'}; "
          f"{figures['videos']} videos of {figures['mean_video_seconds']:.1f} s on average")
    print(f"preprocessing, one CPU worker: {figures['prep_videos_per_s']:.3f} videos/s "
          f"({figures['prep_video_seconds_per_s']:.2f} s of video per s)")
    print(f"model, one worker ({figures['model_device']}, batch {args.batch_size}): "
          f"{figures['model_videos_per_s']:.2f} videos/s")
    print(f"sizing: ceil(R_model / R_prep) = {figures['cpu_workers_per_model_worker']} CPU workers per model worker")
    if not args.skip_end_to_end:
        print(f"end to end with {args.cpu_workers} CPU workers: two-step {figures['two_step_videos_per_s']:.3f} "
              f"videos/s, Ray {figures['ray_videos_per_s']:.3f} videos/s "
              f"(+ {figures['ray_start_seconds']:.1f} s Ray start-up)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
