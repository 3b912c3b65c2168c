"""Mouth-ROI video loading and the AV-HuBERT image transforms.

Videos are decoded with OpenCV and converted BGR → grayscale (``cv2.COLOR_BGR2GRAY``, as
AV-HuBERT's ``utils.load_video``). Transforms act on a whole clip ``[T, H, W]`` at once:

* train: /255 → random crop → horizontal flip with p=0.5 → (x − mean) / std
* eval:  /255 → centre crop → (x − mean) / std

On uint8 clips :class:`VideoTransform` runs the crops and flips first (views) and then all
per-pixel steps at once through a 256-entry table of their float32 results: the same values as
running the steps in order, in one pass over the cropped pixels only.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import cv2
import numpy as np

# AV-HuBERT task defaults (image_crop_size, image_mean, image_std).
CROP_SIZE = 88
MEAN = 0.421
STD = 0.165


class VideoReadError(OSError):
    """A video file is missing, cannot be decoded or has no frames."""


def load_video_frames(path: str | os.PathLike) -> np.ndarray:
    """Decode all frames of a video as grayscale.

    Returns:
        uint8 ``[T, H, W]``.

    Raises:
        VideoReadError: naming ``path`` if it is missing, not decodable or holds no frame.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoReadError(f"video file not found: {path!r}")
    # One decoding thread: ROI frames are tiny and data-loading workers already run in parallel;
    # FFmpeg's frame threads only add hand-over cost (about 2x slower on one core).
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    try:
        if not cap.isOpened():
            raise VideoReadError(f"cannot open video file {path!r}")
        frames = _read_gray(cap, max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0))
    finally:
        cap.release()
    if not len(frames):
        raise VideoReadError(f"no frames could be decoded from video file {path!r}")
    return frames


def _read_gray(cap: cv2.VideoCapture, expected: int) -> np.ndarray:
    """All remaining frames as grayscale ``[T, H, W]``, converted straight into an array sized
    by the container's frame count (a guess: extra frames are appended, missing ones cut)."""
    out: np.ndarray | None = None
    extra = []
    n = 0
    while True:  # decoding is sequential by nature
        ok, frame = cap.read()
        if not ok:
            break
        if out is None:
            out = np.empty((expected, *frame.shape[:2]), np.uint8)
        if n < expected:
            if frame.ndim == 2:
                out[n] = frame
            else:
                cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=out[n])
        else:
            extra.append(frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        n += 1
    if out is None:
        return np.empty((0, 0, 0), np.uint8)
    if extra:
        return np.concatenate([out, np.stack(extra)])
    return out[:n]


def _check_crop(frames: np.ndarray, size: tuple[int, int]) -> None:
    if frames.ndim != 3:
        raise ValueError(f"expected frames [T, H, W], got shape {frames.shape}")
    if frames.shape[1] < size[0] or frames.shape[2] < size[1]:
        raise ValueError(f"cannot crop {size[0]}x{size[1]} from frames of size "
                         f"{frames.shape[1]}x{frames.shape[2]}")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class CenterCrop:
    """Crop ``[T, H, W]`` to ``size`` around the centre (offset ``floor((H - h) / 2)``)."""

    per_pixel = False

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_crop(frames, self.size)
        th, tw = self.size
        top, left = (frames.shape[1] - th) // 2, (frames.shape[2] - tw) // 2
        return frames[:, top:top + th, left:left + tw]


class RandomCrop:
    """Crop ``[T, H, W]`` to ``size`` at one uniformly drawn offset shared by all frames."""

    per_pixel = False

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_crop(frames, self.size)
        rng = rng if rng is not None else np.random.default_rng()
        th, tw = self.size
        top = int(rng.integers(0, frames.shape[1] - th + 1))
        left = int(rng.integers(0, frames.shape[2] - tw + 1))
        return frames[:, top:top + th, left:left + tw]


class HorizontalFlip:
    """Mirror the whole clip left-right with probability ``p``."""

    per_pixel = False

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else np.random.default_rng()
        return frames[:, :, ::-1] if rng.random() < self.p else frames


class Normalize:
    """``(x − mean) / std`` in float32."""

    per_pixel = True  # each output pixel depends on that input pixel only, and draws nothing

    def __init__(self, mean: float, std: float):
        self.mean, self.std = float(mean), float(std)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return ((frames.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std))


Transform = Callable[[np.ndarray, "np.random.Generator | None"], np.ndarray]


def _lookup(frames: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[frames]`` for contiguous uint8 ``frames``, with OpenCV's table lookup (about
    3x numpy's fancy indexing)."""
    if frames.size == 0:
        return table[frames]
    return cv2.LUT(frames.reshape(-1, frames.shape[-1]), table).reshape(frames.shape)


class VideoTransform:
    """A chain of clip transforms: uint8 ``[T, H, W]`` → float32 ``[T, crop, crop]``.

    Build it with :meth:`train` or :meth:`eval`. Random steps draw from the generator passed
    to ``__call__``, else from the one given at construction.

    Steps declare ``per_pixel``: ``True`` for value maps that draw no random numbers
    (:class:`Normalize`), ``False`` for crops and flips, which only move pixels. When every
    step declares it, uint8 clips take the fast path of the module docstring.
    """

    def __init__(self, steps: Sequence[Transform], rng: np.random.Generator | None = None):
        self.steps = list(steps)
        self.rng = rng
        kinds = [getattr(step, "per_pixel", None) for step in self.steps]
        self._table: np.ndarray | None = None
        self._geometric: list[Transform] = []
        if None not in kinds:
            self._geometric = [s for s, per_pixel in zip(self.steps, kinds) if not per_pixel]
            values = np.arange(256, dtype=np.uint8)
            for step, per_pixel in zip(self.steps, kinds):
                if per_pixel:
                    values = step(values, None)
            self._table = np.ascontiguousarray(values, dtype=np.float32)

    @classmethod
    def train(cls, crop_size: int = CROP_SIZE, mean: float = MEAN, std: float = STD,
              rng: np.random.Generator | None = None) -> "VideoTransform":
        """/255 → random crop → flip (p=0.5) → normalise."""
        return cls([Normalize(0.0, 255.0), RandomCrop(crop_size), HorizontalFlip(0.5),
                    Normalize(mean, std)], rng=rng)

    @classmethod
    def eval(cls, crop_size: int = CROP_SIZE, mean: float = MEAN,
             std: float = STD) -> "VideoTransform":
        """/255 → centre crop → normalise (deterministic)."""
        return cls([Normalize(0.0, 255.0), CenterCrop(crop_size), Normalize(mean, std)])

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else self.rng
        if self._table is not None and frames.dtype == np.uint8:
            for step in self._geometric:
                frames = step(frames, rng)
            return _lookup(np.ascontiguousarray(frames), self._table)
        for step in self.steps:
            frames = step(frames, rng)
        return np.ascontiguousarray(frames, dtype=np.float32)
