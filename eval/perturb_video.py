"""The seven video perturbations of the DeeperForensics-1.0 robustness protocol, levels 1-5.

LipForensics, RealForensics and SpeechForensics all report AUC under these 7 types x 5 levels.
This is our own implementation of the published parameter table (DeeperForensics-1.0,
``perturbation/add_distortion_to_video.py``); cell names follow RealForensics (``vc_3``,
``gb_4``):

======  ===========  ======  ======  ======  ======  ======  ==========================================
code    name         L1      L2      L3      L4      L5      what it does (per frame unless noted)
======  ===========  ======  ======  ======  ======  ======  ==========================================
cs      saturation   0.4     0.3     0.2     0.1     0.0     Cb, Cr scaled by p about neutral (p=0: grey)
cc      contrast     0.85    0.725   0.6     0.475   0.35    pixel * p, truncated to uint8
bw      block        16      32      48      64      80      grey (128) 8x8 blocks at random positions
gnc     noise        0.001   0.002   0.005   0.01    0.05    white Gaussian noise of variance p in YCbCr
gb      blur         7       9       13      17      21      Gaussian blur, kernel p x p, sigma p / 6
jpeg    pixelation   2       3       4       5       6       downscale by p, upscale back (bilinear)
vc      compression  30      32      35      38      40      H.264 (libx264) at CRF p (whole video)
======  ===========  ======  ======  ======  ======  ======  ==========================================

Block count. The reference pastes ``min(h, w) // 256 * p`` blocks, so a frame whose short side
is under 256 px (a 96x96 mouth ROI, a 240p video) gets **no** blocks, and a 720p frame gets
twice as many as a 480p one while the blocks stay 8 px. ``block_rule="reference"`` (default)
keeps that rule; ``block_rule="scaled"`` treats every frame as if its short side were 256 px:
``p`` blocks whose side is ``round(8 * min(h, w) / 256)`` px (at least 1), so the occluded
fraction of the frame no longer depends on the resolution (and equals the reference's at a
256 px short side).

YCbCr is ITU-R BT.601 studio swing scaled to [0, 1] (Y in [16, 235] / 255, Cb and Cr in
[16, 240] / 255, neutral chroma 128 / 255), the scale on which the noise variance is given.
Saturation scales chroma about the neutral value (the reference's formula writes 0.5), so level
5 gives exactly grey frames (B = G = R, up to rounding).

Randomness (block positions, noise) comes from a ``numpy.random.Generator`` the caller seeds;
the reference draws from unseeded global generators. Frames are ``uint8 [H, W, 3]`` BGR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

logger = logging.getLogger(__name__)

LEVELS = (1, 2, 3, 4, 5)
BLOCK_SIZE = 8  # px, the reference's block side at a 256 px short side
BLOCK_GREY = 128
BLOCK_RULES = ("reference", "scaled")


@dataclass(frozen=True)
class VideoPerturbation:
    """One perturbation type: its code, readable name and the parameter of each level."""

    code: str
    name: str
    params: tuple[float, ...]

    def param(self, level: int) -> float:
        if level not in LEVELS:
            raise ValueError(f"{self.code}: level must be one of {LEVELS}, got {level!r}")
        return self.params[level - 1]


VIDEO_PERTURBATIONS: dict[str, VideoPerturbation] = {
    p.code: p
    for p in (
        VideoPerturbation("cs", "saturation", (0.4, 0.3, 0.2, 0.1, 0.0)),
        VideoPerturbation("cc", "contrast", (0.85, 0.725, 0.6, 0.475, 0.35)),
        VideoPerturbation("bw", "block", (16, 32, 48, 64, 80)),
        VideoPerturbation("gnc", "noise", (0.001, 0.002, 0.005, 0.01, 0.05)),
        VideoPerturbation("gb", "blur", (7, 9, 13, 17, 21)),
        VideoPerturbation("jpeg", "pixelation", (2, 3, 4, 5, 6)),
        VideoPerturbation("vc", "compression", (30, 32, 35, 38, 40)),
    )
}

# BT.601: full-range R'G'B' in [0, 1] -> Y'CbCr studio swing in [0, 1] (rows Y, Cb, Cr).
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
_RGB_TO_YCBCR = np.array(
    [
        [_KR, _KG, _KB],
        [-_KR / (2 * (1 - _KB)), -_KG / (2 * (1 - _KB)), 0.5],
        [0.5, -_KG / (2 * (1 - _KR)), -_KB / (2 * (1 - _KR))],
    ]
) * (np.array([219.0, 224.0, 224.0]) / 255.0)[:, None]
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0
NEUTRAL_CHROMA = 128.0 / 255.0
# The same as 3x4 affine maps on BGR 0-255 pixels, for cv2.transform (float32, fast).
_BGR_TO_YCBCR = np.hstack([_RGB_TO_YCBCR[:, ::-1] / 255.0, _YCBCR_OFFSET[:, None]]).astype(np.float32)
_YCBCR_TO_BGR_LINEAR = (np.linalg.inv(_RGB_TO_YCBCR)[::-1] * 255.0).astype(np.float32)
_YCBCR_TO_BGR = np.hstack(
    [_YCBCR_TO_BGR_LINEAR, -(_YCBCR_TO_BGR_LINEAR @ _YCBCR_OFFSET)[:, None]]
).astype(np.float32)


def _pixelwise(values: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` (3x3 or 3x4 affine) applied to the last axis of ``[..., 3]``."""
    flat = values.astype(np.float32).reshape(-1, 1, 3)
    return cv2.transform(flat, matrix).reshape(values.shape)


def bgr_to_ycbcr(frame: np.ndarray) -> np.ndarray:
    """``uint8 [..., 3]`` BGR (a frame ``[H, W, 3]`` or frames ``[T, H, W, 3]``) ->
    ``float32 [..., 3]`` Y, Cb, Cr in [0, 1] (BT.601 studio swing)."""
    return _pixelwise(frame, _BGR_TO_YCBCR)


def ycbcr_to_bgr(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`bgr_to_ycbcr`: ``float [..., 3]`` -> BGR ``float32`` on the 0-255
    scale, not clipped or rounded."""
    return _pixelwise(ycbcr, _YCBCR_TO_BGR)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def color_saturation(frame: np.ndarray, p: float) -> np.ndarray:
    """Scale the chroma (Cb, Cr) about neutral by ``p``; ``p = 0`` gives grey."""
    ycbcr = bgr_to_ycbcr(frame)
    ycbcr[..., 1:] = NEUTRAL_CHROMA + (ycbcr[..., 1:] - NEUTRAL_CHROMA) * np.float32(p)
    return _to_uint8(ycbcr_to_bgr(ycbcr))


def color_contrast(frame: np.ndarray, p: float) -> np.ndarray:
    """Every pixel times ``p``, truncated to uint8 as the reference's cast does."""
    return np.clip(frame.astype(np.float32) * np.float32(p), 0, 255).astype(np.uint8)


def block_layout(height: int, width: int, p: int, rule: str = "reference") -> tuple[int, int]:
    """``(count, side)`` of the grey blocks pasted on an ``height x width`` frame at parameter
    ``p`` under ``rule`` (see the module docstring)."""
    short = min(height, width)
    if rule == "reference":
        return short // 256 * int(p), BLOCK_SIZE
    if rule == "scaled":
        return int(p), max(1, int(round(BLOCK_SIZE * short / 256)))
    raise ValueError(f"block rule must be one of {BLOCK_RULES}, got {rule!r}")


def block_wise(frame: np.ndarray, p: int, rng: np.random.Generator, rule: str = "reference") -> np.ndarray:
    """Paste grey blocks at uniformly random top-left corners (blocks may overlap; a corner
    lies in ``[0, size - 1 - side]`` as in the reference)."""
    h, w = frame.shape[:2]
    count, side = block_layout(h, w, p, rule)
    out = frame.copy()
    if count == 0 or side >= min(h, w):
        return out
    rows = rng.integers(0, h - side, size=count)  # exclusive high = h - 1 - side inclusive
    cols = rng.integers(0, w - side, size=count)
    for r, c in zip(rows, cols):
        out[r : r + side, c : c + side] = BLOCK_GREY
    return out


def gaussian_noise_color(frame: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of variance ``p`` to Y, Cb and Cr (on the [0, 1] scale).

    The colour conversion is linear, so the noise is mapped to BGR and added there (the same
    result as converting, adding and converting back, without the round trip)."""
    noise = rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(np.sqrt(p))
    return _to_uint8(frame.astype(np.float32) + _pixelwise(noise, _YCBCR_TO_BGR_LINEAR))


def gaussian_blur(frame: np.ndarray, p: int) -> np.ndarray:
    """Gaussian blur with a ``p x p`` kernel and sigma ``p / 6``."""
    k = int(p)
    return cv2.GaussianBlur(frame, (k, k), k / 6.0)


def pixelation(frame: np.ndarray, p: int) -> np.ndarray:
    """Downscale to ``(h // p, w // p)`` and back to ``(h, w)`` with bilinear interpolation
    (the reference calls this "JPEG")."""
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (max(1, w // int(p)), max(1, h // int(p))), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


FrameFn = Callable[[np.ndarray], np.ndarray]
_WARNED_NO_BLOCKS: set[tuple[int, int]] = set()  # frame sizes already warned about (once per process)


def frame_perturbation(
    code: str, level: int, rng: np.random.Generator, block_rule: str = "reference"
) -> FrameFn | None:
    """The per-frame function of ``code`` at ``level`` (``None`` for ``vc``, which acts on the
    whole encoded video: see :func:`compression_crf`). ``rng`` is drawn from frame by frame."""
    perturbation = _lookup(code)
    p = perturbation.param(level)
    if code == "cs":
        return lambda f: color_saturation(f, p)
    if code == "cc":
        return lambda f: color_contrast(f, p)
    if code == "bw":
        if block_rule not in BLOCK_RULES:
            raise ValueError(f"block rule must be one of {BLOCK_RULES}, got {block_rule!r}")

        def blocks(f: np.ndarray) -> np.ndarray:
            size = f.shape[:2]
            if size not in _WARNED_NO_BLOCKS and block_layout(*size, int(p), block_rule)[0] == 0:
                _WARNED_NO_BLOCKS.add(size)
                logger.warning(
                    "block-wise: a %dx%d frame gets no blocks under the reference rule (short "
                    "side < 256 px); use block_rule='scaled' for a resolution-independent "
                    "occlusion", size[1], size[0],
                )
            return block_wise(f, int(p), rng, block_rule)

        return blocks
    if code == "gnc":
        return lambda f: gaussian_noise_color(f, p, rng)
    if code == "gb":
        return lambda f: gaussian_blur(f, int(p))
    if code == "jpeg":
        return lambda f: pixelation(f, int(p))
    return None  # vc


def compression_crf(code: str, level: int) -> int | None:
    """The H.264 CRF of ``vc`` at ``level``; ``None`` for the per-frame types."""
    return int(_lookup(code).param(level)) if code == "vc" else None


def _lookup(code: str) -> VideoPerturbation:
    try:
        return VIDEO_PERTURBATIONS[code]
    except KeyError:
        raise ValueError(
            f"unknown video perturbation {code!r}; choose from {sorted(VIDEO_PERTURBATIONS)}"
        ) from None
