"""Benchmark synthetic clip generation on one CPU core.

Pins this process to one core (OpenCV to one thread), then generates ``--clips`` real test
clips plus their fakes the way the corpus CLI does (espeak-ng speech, face augmentation with
dlib landmarks, per-frame lip/jaw warping, H.264 + AAC encoding) into a temporary folder, after
one warm-up clip that loads the models. It prints, per stage, seconds per second of video, and
the overall speed as a multiple of real time (seconds of video made per second), by wall clock
and by this process's CPU time (which other jobs on a shared machine disturb less). The
target is at least 2× real time.

    python benchmarks/bench_synthetic.py --clips 6
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sf_fairseq.preprocess.synthetic import corpus_engine
from sf_fairseq.preprocess.synthetic.clips import render_frames, write_mp4
from sf_fairseq.preprocess.synthetic.faces import augment
from sf_fairseq.preprocess.synthetic.fakes import CATEGORIES, make_fake
from sf_fairseq.preprocess.synthetic.render import FaceRenderer


class Clock:
    """Wall and CPU seconds spent per stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, stage: str, fn, *args):
        w, c = time.perf_counter(), time.process_time()
        result = fn(*args)
        self.wall[stage] = self.wall.get(stage, 0.0) + time.perf_counter() - w
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - c
        return result


def generate(out: Path, index: int, size: tuple[int, int], clock: Clock) -> float:
    """One source clip and all its categories; returns seconds of video written."""
    real = clock.run("speech + plan", corpus_engine.source_plan, 0, "test", index, size, False)
    renderer = clock.run("face augmentation + dlib", lambda: FaceRenderer(*augment(real.augmentation, size)))
    seconds = 0.0
    for k, category in enumerate(CATEGORIES):
        plan = real if category == "real" else clock.run(
            "speech + plan", make_fake, real, category, np.random.default_rng([0, index, k]))
        frames = clock.run("render", lambda: list(render_frames(plan, renderer)))
        clock.run("encode", write_mp4, out / f"{category}_{index}.mp4", iter(frames), plan.audio, size)
        seconds += plan.n_frames / 25
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4, help="source clips (each with every fake category)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 320), metavar=("W", "H"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    size = (args.size[0], args.size[1])
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), 10_000, size, Clock())  # warm-up: model loading, imports
        clock = Clock()
        wall, cpu = time.perf_counter(), time.process_time()
        seconds = sum(generate(Path(tmp), i, size, clock) for i in range(args.clips))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{args.clips} source clips × {len(CATEGORIES)} categories = {seconds:.1f} s of "
          f"{size[0]}×{size[1]} video at 25 fps, one core")
    for stage in clock.wall:
        print(f"  {stage:<26s} {clock.wall[stage] / seconds * 1000:6.1f} ms wall "
              f"({clock.cpu[stage] / seconds * 1000:6.1f} ms CPU) per second of video")
    print(f"speed: {seconds / wall:.2f}× real time by wall clock, {seconds / cpu:.2f}× by CPU time "
          "(target ≥ 2×)")


if __name__ == "__main__":
    main()
