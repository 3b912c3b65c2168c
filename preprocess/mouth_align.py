"""Mouth ROI alignment, as AV-HuBERT's and SpeechForensics' ``align_mouth.py`` do it.

Per frame ``t`` (``T`` frames, landmarks ``[T, 68, 2]`` in source pixels):

1. frames without landmarks are linearly interpolated (before the first / after the last
   detected frame the nearest landmarks are copied);
2. the landmarks are averaged over the window ``t .. t + 11`` (12 frames); the last 11 frames
   reuse the transform of frame ``T - 12`` (the reference's queue does exactly this);
3. a similarity transform maps the averaged points 33, 36, 39, 42, 45 onto the same points of
   the mean face, i.e. into a 256×256 reference frame;
4. the mouth centre is the mean of that frame's own (unaveraged) points 48–67 after the
   transform, clamped so the 96×96 crop stays inside the 256×256 image, rounded as the
   reference rounds;
5. the crop is warped directly from the source frame (one ``warpAffine`` into 96×96, which
   samples exactly the pixels that warping to 256×256 and cutting would).
"""

from __future__ import annotations

import cv2
import numpy as np

from .mean_face import REFERENCE_SIZE

STABLE_POINTS = (33, 36, 39, 42, 45)  # nose tip and eye corners
MOUTH_POINTS = slice(48, 68)
SMOOTHING_WINDOW = 12
CROP_SIZE = 96


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) taking
    ``src`` [N, 2] onto ``dst`` [N, 2] (Umeyama 1991). Returns float64 [2, 3] ``A`` with
    ``dst ≈ src @ A[:, :2].T + A[:, 2]``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection would fit better: forbid it
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / src_var if src_var > 0 else 1.0
    linear = scale * rotation
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``matrix`` [2, 3], ``points`` [..., 2] → transformed points [..., 2]."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def interpolate_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Fill frames without landmarks (NaN) in ``landmarks`` [T, 68, 2]: linear between detected
    frames, nearest detected frame at the ends. Returns float32 [T, 68, 2] (float32 keeps an
    hour of landmarks at ~50 MB). Raises ``ValueError`` if no frame has any."""
    filled = np.array(landmarks, dtype=np.float32)
    found = np.flatnonzero(np.isfinite(filled).all(axis=(1, 2)))
    if len(found) == 0:
        raise ValueError("no frame has landmarks")
    missing = np.setdiff1d(np.arange(len(filled)), found)
    if len(missing):
        after = np.clip(np.searchsorted(found, missing), 1, len(found) - 1)
        before = after - 1
        if len(found) == 1:
            before = after = np.zeros_like(missing)
        t0, t1 = found[before], found[after]
        weight = np.clip((missing - t0) / np.maximum(t1 - t0, 1), 0.0, 1.0)[:, None, None]
        filled[missing] = (1 - weight) * filled[t0] + weight * filled[t1]
    return filled


def smoothed_transforms(
    landmarks: np.ndarray, mean_face: np.ndarray, window: int = SMOOTHING_WINDOW
) -> np.ndarray:
    """Per-frame similarity transforms [T, 2, 3] from complete ``landmarks`` [T, 68, 2] to the
    mean face, estimated on the stable points averaged over ``window`` frames from ``t`` on.
    Clips shorter than the window use the average of all their frames."""
    n = len(landmarks)
    stable = np.asarray(landmarks, dtype=np.float64)[:, STABLE_POINTS]
    target = mean_face[list(STABLE_POINTS)]
    span = min(window, n)
    cumsum = np.concatenate([np.zeros((1, *stable.shape[1:])), np.cumsum(stable, axis=0)])
    n_windows = n - span + 1
    means = (cumsum[span:span + n_windows] - cumsum[:n_windows]) / span
    transforms = np.empty((n, 2, 3))
    for t in range(n_windows):
        transforms[t] = similarity_transform(means[t], target)
    transforms[n_windows:] = transforms[n_windows - 1]
    return transforms


def mouth_centres(
    landmarks: np.ndarray,
    transforms: np.ndarray,
    crop_size: int = CROP_SIZE,
    image_size: int = REFERENCE_SIZE,
) -> np.ndarray:
    """Mouth centres [T, 2] (x, y) in the 256×256 aligned frame, clamped so the crop fits.
    ``landmarks`` [T, 68, 2] complete, ``transforms`` [T, 2, 3]."""
    mouth = np.einsum("tij,tpj->tpi", transforms[:, :, :2], landmarks[:, MOUTH_POINTS])
    centres = mouth.mean(axis=1) + transforms[:, :, 2]
    half = crop_size / 2
    return np.clip(centres, half, image_size - half)


def crop_matrices(
    transforms: np.ndarray, centres: np.ndarray, crop_size: int = CROP_SIZE
) -> np.ndarray:
    """Source-pixel → crop-pixel affine matrices [T, 2, 3]: the transform into the aligned
    frame followed by the shift that puts the crop's corner at the origin. The corner is
    ``round(centre) - crop_size / 2`` as in the reference's ``cut_patch``."""
    corners = np.round(centres) - crop_size // 2
    matrices = transforms.copy()
    matrices[:, :, 2] -= corners
    return matrices


def crop_mouth(frame: np.ndarray, matrix: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """``frame`` uint8 [H, W] or [H, W, C] → crop uint8 [crop_size, crop_size(, C)], bilinear,
    black outside the source image (as ``skimage.transform.warp``)."""
    return cv2.warpAffine(
        frame, matrix, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def mouth_crop_matrices(
    landmarks: np.ndarray, mean_face: np.ndarray, window: int = SMOOTHING_WINDOW,
    crop_size: int = CROP_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole alignment for one face: ``landmarks`` [T, 68, 2] with NaN where missing →
    (crop matrices [T, 2, 3] for :func:`crop_mouth`, mouth centres [T, 2] in the 256×256
    aligned frame)."""
    complete = interpolate_landmarks(landmarks)
    transforms = smoothed_transforms(complete, mean_face, window)
    centres = mouth_centres(complete, transforms, crop_size)
    return crop_matrices(transforms, centres, crop_size), centres
