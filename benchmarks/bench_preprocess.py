"""Benchmark raw video → mouth ROI preprocessing on one CPU core.

Generates a 640×360 clip at 25 fps with 48 kHz stereo audio (a real face, scikit-image's
astronaut photo, drifting and zooming slightly on a canvas), pins this process to one core,
and runs the full per-video pipeline (decode → faces → alignment → written ROI mp4 + wav):

* the fast way (``--detect-every`` frames between detections, downscaled detection), and
* the reference way (HOG with one upsampling on every full-resolution frame, as AV-HuBERT's
  ``detect_landmark.py``), on the first ``--reference-seconds`` of the clip.

It prints frames per second end to end (by wall clock, and by this process's CPU time, which
other jobs on a shared machine disturb less), peak resident memory (and what the imports alone
take), and how far the fast way's ROI centres (mapped back to source pixels) are from the
reference way's.

    python benchmarks/bench_preprocess.py --seconds 20
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data

from sf_fairseq.preprocess.mean_face import load_mean_face
from sf_fairseq.preprocess.mouth_align import CROP_SIZE, mouth_crop_matrices
from sf_fairseq.preprocess.prepare_engine import InputItem, PrepareOptions, VideoPreprocessor

WIDTH, HEIGHT, FPS, AUDIO_RATE = 640, 360, 25, 48000


def write_clip(path: Path, seconds: float) -> None:
    """Stream a synthetic talking-head-sized clip to ``path`` (memory independent of length)."""
    face = np.ascontiguousarray(data.astronaut()[0:300, 80:360, ::-1])
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    n = round(seconds * FPS)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "23"}
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "stereo"
        for i in range(n):
            t = i / FPS
            scale = 0.85 + 0.05 * np.sin(2 * np.pi * 0.2 * t)
            patch = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            ph, pw = patch.shape[:2]
            x = (WIDTH - pw) // 2 + int(40 * np.sin(2 * np.pi * 0.1 * t))
            y = (HEIGHT - ph) // 2 + int(10 * np.cos(2 * np.pi * 0.3 * t))
            canvas = background.copy()
            canvas[y:y + ph, x:x + pw] = patch
            frame = av.VideoFrame.from_ndarray(canvas, format="bgr24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
            times = np.arange(AUDIO_RATE // FPS) / AUDIO_RATE + t
            samples = 0.1 * np.sin(2 * np.pi * 200 * times)
            block = av.AudioFrame.from_ndarray(
                np.repeat(samples[None].astype(np.float32), 2, axis=0), format="fltp",
                layout="stereo",
            )
            block.sample_rate = AUDIO_RATE
            block.pts = i * (AUDIO_RATE // FPS)
            block.time_base = Fraction(1, AUDIO_RATE)
            for packet in audio.encode(block):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)


def roi_centres(landmarks_npz: Path, mean_face: np.ndarray) -> np.ndarray:
    """Source-pixel positions [T, 2] of the ROI centre of the first track."""
    landmarks = np.load(landmarks_npz)["landmarks"][0]
    matrices, _ = mouth_crop_matrices(landmarks, mean_face)
    centre = np.array([CROP_SIZE / 2, CROP_SIZE / 2, 1.0])
    full = np.concatenate([matrices, np.tile([[[0, 0, 1.0]]], (len(matrices), 1, 1))], axis=1)
    return np.linalg.solve(full, np.broadcast_to(centre, (len(matrices), 3))[..., None])[:, :2, 0]


def run(options: PrepareOptions, clip: Path, out_dir: Path, name: str) -> tuple[dict, float, float]:
    """(record, wall seconds, CPU seconds) of one video through the whole pipeline."""
    preprocessor = VideoPreprocessor(options)
    wall, cpu = time.perf_counter(), time.process_time()
    record = preprocessor.process(InputItem(name, str(clip)), out_dir)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if record["status"] != "ok":
        raise SystemExit(f"{name}: {record['status']}: {record['reason']}")
    return record, wall, cpu


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="clip length (default: %(default)s)")
    parser.add_argument("--reference-seconds", type=float, default=8.0,
                        help="length run the reference way for the accuracy check; 0 skips it "
                        "(default: %(default)s)")
    parser.add_argument("--detect-every", type=int, default=PrepareOptions.detect_every)
    parser.add_argument("--detect-size", type=int, default=PrepareOptions.detect_size)
    parser.add_argument("--core", type=int, default=0,
                        help="CPU core to pin to (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)  # fairseq's import turns on DEBUG

    os.sched_setaffinity(0, {args.core})
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = tmp / "bench.mp4"
        write_clip(clip, args.seconds)
        fast = PrepareOptions(detect_every=args.detect_every, detect_size=args.detect_size)
        before_mib = rss_mib()
        record, wall, cpu = run(fast, clip, tmp / "out", "fast")
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = record["n_frames"]
        print(f"input {WIDTH}x{HEIGHT} {FPS} fps, {n} frames ({args.seconds:g} s), one core")
        print(f"fast (detect every {args.detect_every}, detect size {args.detect_size}): "
              f"{n / wall:.1f} frames/s end to end by wall clock ({wall:.2f} s), "
              f"{n / cpu:.1f} by CPU time")
        print(f"peak RSS: {peak_mib:.0f} MiB (imports and models: {before_mib:.0f} MiB)")
        if args.reference_seconds > 0:
            short = tmp / "reference.mp4"
            write_clip(short, min(args.reference_seconds, args.seconds))
            reference = PrepareOptions(detect_every=1, detect_size=10**6, upsample=1)
            ref_record, ref_wall, ref_cpu = run(reference, short, tmp / "out", "reference")
            m = ref_record["n_frames"]
            print(f"reference (detect every frame, full size, upsample 1): "
                  f"{m / ref_wall:.1f} frames/s by wall clock, {m / ref_cpu:.1f} by CPU time; "
                  f"fast/reference speed-up {(n / cpu) / (m / ref_cpu):.1f}x")
            run(fast, short, tmp / "out", "fast_short")
            mean_face = load_mean_face()
            diff = np.linalg.norm(
                roi_centres(tmp / "out/landmarks/fast_short.npz", mean_face)
                - roi_centres(tmp / "out/landmarks/reference.npz", mean_face), axis=1,
            )
            print(f"ROI centre vs reference: mean {diff.mean():.2f} px, max {diff.max():.2f} px "
                  f"(source pixels, {m} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
