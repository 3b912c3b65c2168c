"""Training input pipeline: frames per second of one data-loading worker.

Runs what one DataLoader worker of ``av_hubert_pretraining`` does, in this process: the
dataset's ``__getitem__`` (ROI decode, random crop + flip + normalise, log filterbanks, stacking
to 25 Hz, per-frame norm) for every item, then the collater on batches of ``--batch-size``
items (random crop to the shortest, as pretraining). It prints video frames per second end to
end, and per step (each step replayed alone on the same items): video decode, crop/flip/
normalise, filterbank, stacking (+ pad/trim + norm), collation.

Without ``--data`` it writes ``--clips`` mouth-ROI clips of 3–10 s (96x96, written by the
same :class:`~sf_fairseq.preprocess.media.RoiWriter` as ``sf-prepare``: H.264 crf 20, a moving
textured face crop, so decoding costs what real ROIs cost) with wavs, a manifest and 25 Hz
labels in a temporary folder. With ``--packed`` it also packs them (``sf-pack-roi``) and
measures the packed path. Pin it to one core, as a worker is::

    taskset -c 1 python benchmarks/bench_dataloader.py
    taskset -c 1 python benchmarks/bench_dataloader.py --packed --repeats 3

CPU time (this process) is printed beside wall time: on a shared machine it is disturbed less.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch
from skimage import data as skdata

from sf_fairseq.data.audio_features import logfbank, normalize_per_frame, stack_frames
from sf_fairseq.data.av_hubert_dataset import AVHubertDataset
from sf_fairseq.data.manifest import (
    ManifestItem,
    format_cluster_ids,
    write_label_lines,
    write_manifest,
)
from sf_fairseq.preprocess.media import RoiWriter

FPS, RATE, ROI = 25, 16000, 96


def write_corpus(root: Path, n_clips: int, seconds: tuple[float, float], seed: int = 0) -> None:
    """``train.tsv`` + ``train.km`` of ``n_clips`` ROI clips (mp4 + wav) under ``root``."""
    rng = np.random.default_rng(seed)
    face = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)[140:320, 160:340]
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    items, labels = [], []
    for k in range(n_clips):
        n = round(rng.uniform(*seconds) * FPS)
        name = f"clip{k:03d}"
        phase = rng.uniform(0, 6, 3)
        with RoiWriter(media / f"{name}.mp4", ROI, ROI) as writer:
            for t in range(n):
                x = 40 + int(30 * np.sin(t / 9 + phase[0]))
                y = 40 + int(30 * np.cos(t / 7 + phase[1]))
                frame = face[y:y + ROI, x:x + ROI].astype(np.int16)
                frame += int(25 * np.sin(t / 4 + phase[2]))
                writer.write(np.clip(frame, 0, 255).astype(np.uint8))
        wav = 3000 * np.sin(2 * np.pi * 180 * np.arange(n * RATE // FPS) / RATE)
        wav += rng.normal(0, 800, wav.shape)
        sf.write(media / f"{name}.wav", wav.astype(np.int16), RATE, subtype="PCM_16")
        items.append(ManifestItem(name, f"media/{name}.mp4", f"media/{name}.wav", n,
                                  n * RATE // FPS))
        labels.append(format_cluster_ids(rng.integers(0, 100, n)))
    write_manifest(root / "train.tsv", str(root), items)
    write_label_lines(root / "train.km", labels)


def build_dataset(data: Path, split: str, label: str, packed: str | None) -> AVHubertDataset:
    """The dataset as pretraining builds it (image aug, random crop, per-frame norm)."""
    return AVHubertDataset(
        str(data / f"{split}.tsv"), sample_rate=FPS, label_paths=[str(data / f"{split}.{label}")],
        label_rates=FPS, pad_list=[1], eos_list=[2], max_sample_size=500, pad_audio=False,
        normalize=True, random_crop=True, stack_order_audio=4, image_mean=0.421,
        image_std=0.165, image_crop_size=88, image_aug=True, packed_dir=packed,
    )


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def run_epoch(ds: AVHubertDataset, batch_size: int) -> int:
    """``__getitem__`` + collater over the whole dataset; returns the video frames loaded."""
    order = ds.ordered_indices()
    frames = 0
    for start in range(0, len(order), batch_size):
        samples = [ds[int(i)] for i in order[start:start + batch_size]]
        frames += sum(len(s["video"]) for s in samples)
        ds.collater(samples)
    return frames


def time_steps(ds: AVHubertDataset, batch_size: int) -> dict[str, Clock]:
    """Wall and CPU seconds of each step of ``__getitem__`` + collater, replayed alone."""
    steps: dict[str, Callable[[int], object]] = {}
    videos = {i: ds.load_video(i) for i in range(len(ds))}
    wavs = {i: ds.load_audio_samples(i) for i in range(len(ds))}
    fbanks = {i: logfbank(w).astype(np.float32) for i, w in wavs.items()}
    steps["video decode" if ds.packed is None else "packed read"] = ds.load_video
    steps["crop/flip/normalise"] = lambda i: ds.video_transform(videos[i], ds._item_rng(i))
    steps["wav read"] = ds.load_audio_samples
    steps["filterbank"] = lambda i: logfbank(wavs[i])
    steps["stacking + norm"] = lambda i: normalize_per_frame(
        torch.from_numpy(stack_frames(fbanks[i], 4)[: int(ds.sizes[i])]))
    seconds = {}
    for name, step in steps.items():
        with Clock() as clock:
            for i in range(len(ds)):
                step(i)
        seconds[name] = clock
    samples = [ds[i] for i in range(len(ds))]
    with Clock() as clock:
        for start in range(0, len(samples), batch_size):
            ds.collater(samples[start:start + batch_size])
    seconds["collation"] = clock
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="folder with {split}.tsv and {split}.{label} "
                        "(default: write a synthetic ROI corpus in a temporary folder)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--label", default="km")
    parser.add_argument("--clips", type=int, default=20, help="synthetic clips to write")
    parser.add_argument("--batch-size", type=int, default=4, help="items per collated batch")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the data (best kept)")
    parser.add_argument("--packed", action="store_true",
                        help="also pack the split (sf-pack-roi) and measure the packed path")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one worker: DataLoader workers run torch single-threaded

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp)
            write_corpus(data, args.clips, (3.0, 10.0))
        paths: dict[str, str | None] = {"mp4": None}
        if args.packed:
            from sf_fairseq.preprocess.pack import pack_split

            packed = Path(tmp) / "packed"
            with Clock() as clock:
                stats = pack_split(data / f"{args.split}.tsv", packed)
            print(f"packed {stats.n_items} clips, {stats.n_frames} frames in {clock.wall:.1f} s: "
                  f"{stats.n_bytes / 2**20:.1f} MiB ({stats.n_bytes / stats.n_frames:.0f} bytes "
                  f"per frame, with audio)")
            paths["packed"] = str(packed)

        cpus = sorted(os.sched_getaffinity(0))
        print(f"date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
              f"{platform.processor() or platform.machine()}, capability "
              f"{torch.backends.cpu.get_cpu_capability()}, pinned to CPUs {cpus}, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for kind, packed_dir in paths.items():
            ds = build_dataset(data, args.split, args.label, packed_dir)
            total = int(ds.sizes.sum())
            best = None
            for epoch in range(1, args.repeats + 1):
                ds.set_epoch(epoch)
                with Clock() as clock:
                    frames = run_epoch(ds, args.batch_size)
                if best is None or clock.wall < best.wall:
                    best = clock
            print(f"\n[{kind}] {len(ds)} clips, {total} frames ({total / FPS:.0f} s): "
                  f"{frames / best.wall:,.0f} frames/s per worker (wall; "
                  f"{frames / max(best.cpu, 1e-9):,.0f} by CPU time)")
            print(f"  {'step':22s} {'frames/s (wall)':>16s} {'(CPU time)':>12s} {'CPU µs/frame':>13s}")
            for name, clock in time_steps(ds, args.batch_size).items():
                print(f"  {name:22s} {total / clock.wall:>16,.0f} "
                      f"{total / max(clock.cpu, 1e-9):>12,.0f} {1e6 * clock.cpu / total:>13.1f}")


if __name__ == "__main__":
    main()
