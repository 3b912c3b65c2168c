"""The 68-point mean face the mouth crops are aligned to (shipped in ``assets/``; its README
gives the provenance)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MEAN_FACE_PATH = Path(__file__).resolve().parent / "assets" / "mean_face_68.npy"
REFERENCE_SIZE = 256  # the mean face's coordinates live in a 256×256 frame


def load_mean_face(path: str | os.PathLike | None = None) -> np.ndarray:
    """float64 [68, 2] (x, y) landmarks in the 256×256 reference frame."""
    path = Path(path) if path is not None else MEAN_FACE_PATH
    points = np.load(path, allow_pickle=False)
    if points.shape != (68, 2) or not np.all(np.isfinite(points)):
        raise ValueError(f"{path}: expected 68 finite (x, y) points, got shape {points.shape}")
    return points.astype(np.float64)
