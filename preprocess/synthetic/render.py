"""Talking-face frames from one photo: lips and jaw warped to a mouth shape, small head motion.

Geometry lives in the 68 iBUG landmarks of the (augmented) photo, found once with dlib. For a
mouth shape ``(open, width)`` :func:`target_landmarks` moves the lip and jaw points: the inner
lips part by ``open × 0.42 × mouth width`` (the upper lip takes 30 % of the motion, the lower
lip and the jaw 70 %), the corners move out (spread) or in (rounded). Lips the photo shows apart
(a smile with teeth) are first brought together, so ``open = 0`` means closed for every photo.

The photo is warped piecewise-affinely: a fixed triangulation of the mouth/jaw landmarks plus
still anchors (nose, eyes, outer jaw, a frame around the region) maps every target triangle
back to its place in the photo, as a dense backward map for :func:`cv2.remap` computed only
around the mouth. The opened inner-lip polygon is then painted as a mouth cavity (dark, with a
band of upper teeth) and feathered, so dlib's inner-lip points follow the opening. Small head
motion (rotation, translation, scale from low-frequency sinusoids) is a final affine warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from sf_fairseq.data.rates import FPS

GAP_PER_WIDTH = 0.42  # inner-lip gap at open = 1, as a fraction of the mouth width
SPREAD_PER_WIDTH = 0.10  # corner motion at width = +1 (each side), fraction of the mouth width
ROUND_PER_WIDTH = 0.16  # corner motion at width = -1
UPPER_SHARE = 0.3  # part of the opening taken by the upper lip

_UPPER_OUTER = (49, 50, 51, 52, 53)
_LOWER_OUTER = (59, 58, 57, 56, 55)  # below 49..53
_UPPER_INNER = (61, 62, 63)
_LOWER_INNER = (67, 66, 65)  # below 61..63
_JAW_WEIGHTS = {4: 0.15, 5: 0.45, 6: 0.75, 7: 0.95, 8: 1.0, 9: 0.95, 10: 0.75, 11: 0.45, 12: 0.15}
_MOVING = tuple(range(48, 68)) + tuple(_JAW_WEIGHTS)
_ANCHORS = (0, 1, 2, 3, 13, 14, 15, 16, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)


def target_landmarks(base: np.ndarray, open_: float, width: float) -> np.ndarray:
    """Landmarks ``[68, 2]`` of the photo's face with the mouth at shape ``(open_, width)``.

    ``base`` are the photo's own landmarks; only mouth and lower-jaw points move.
    """
    pts = base.astype(np.float64).copy()
    mouth_w = np.linalg.norm(base[54] - base[48])
    gap_max = GAP_PER_WIDTH * mouth_w
    # Per inner pair (61/67, 62/66, 63/65): change of gap from the photo's to the target's.
    gap0 = base[list(_LOWER_INNER), 1] - base[list(_UPPER_INNER), 1]
    delta = open_ * gap_max * np.array([0.8, 1.0, 0.8]) - gap0  # > 0: open further
    up, down = UPPER_SHARE * delta, (1 - UPPER_SHARE) * delta
    for k, (u, lo) in enumerate(zip(_UPPER_INNER, _LOWER_INNER)):
        pts[u, 1] -= up[k]
        pts[lo, 1] += down[k]
    # Outer lips follow the inner pair nearest them (outer 49,50 ↔ 61; 51 ↔ 62; 52,53 ↔ 63).
    for outer, k in zip(range(5), (0, 0, 1, 2, 2)):
        scale = 0.8 if outer in (0, 4) else 1.0
        pts[_UPPER_OUTER[outer], 1] -= scale * up[k]
        pts[_LOWER_OUTER[outer], 1] += scale * down[k]
    # Corners drop a little with the jaw.
    for corner in (48, 54, 60, 64):
        pts[corner, 1] += 0.3 * down.mean()
    # The jaw follows the middle of the lower lip (a closed photo mouth keeps its jaw).
    jaw = max(down[1], 0.0) if gap0[1] <= 0 else down[1]
    for i, w in _JAW_WEIGHTS.items():
        pts[i, 1] += w * jaw
    # Spreading / rounding: horizontal motion proportional to the distance from the centre.
    cx = 0.5 * (base[48, 0] + base[54, 0])
    gain = SPREAD_PER_WIDTH if width > 0 else ROUND_PER_WIDTH
    for i in range(48, 68):
        pts[i, 0] += width * gain * mouth_w * (base[i, 0] - cx) / (0.5 * mouth_w)
    return pts


@dataclass(frozen=True)
class HeadMotion:
    """Smooth small head motion: per-frame rotation (deg), shift (px) and scale factor."""

    angle: np.ndarray  # [T]
    shift: np.ndarray  # [T, 2]
    scale: np.ndarray  # [T]

    @staticmethod
    def random(rng: np.random.Generator, n_frames: int, fps: int = FPS, amount: float = 1.0) -> "HeadMotion":
        """Sums of three sinusoids of 0.1–0.7 Hz with random phases per degree of freedom:
        about ±1.5° rotation, ±3 px shift, ±1.5 % scale at ``amount = 1``."""
        t = np.arange(n_frames) / fps

        def wave(size: float) -> np.ndarray:
            f = rng.uniform(0.1, 0.7, 3)
            phase = rng.uniform(0, 2 * np.pi, 3)
            a = rng.uniform(0.3, 1.0, 3)
            return amount * size * (a[None] * np.sin(2 * np.pi * f[None] * t[:, None] + phase[None])).sum(1) / a.sum()

        return HeadMotion(wave(1.5), np.stack([wave(3.0), wave(2.0)], axis=1), 1.0 + wave(0.015))

    @staticmethod
    def still(n_frames: int) -> "HeadMotion":
        return HeadMotion(np.zeros(n_frames), np.zeros((n_frames, 2)), np.ones(n_frames))

    def matrix(self, t: int, center: tuple[float, float]) -> np.ndarray:
        m = cv2.getRotationMatrix2D(center, float(self.angle[t]), float(self.scale[t]))
        m[:, 2] += self.shift[t]
        return m


class FaceRenderer:
    """Renders frames of one photo with given mouth shapes.

    Args:
        image: the photo, ``[H, W, 3]`` uint8 BGR (already at the output size).
        landmarks: its 68 landmarks ``[68, 2]`` (x, y) in pixels.
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray):
        self.image = np.ascontiguousarray(image)
        self.base = landmarks.astype(np.float64)
        h, w = image.shape[:2]
        mouth_w = np.linalg.norm(self.base[54] - self.base[48])
        # Region that may change: around mouth and jaw, generously (motion up to ~0.3 mouth widths).
        moving = self.base[list(_MOVING)]
        pad = 0.6 * mouth_w
        x0, y0 = np.floor(moving.min(0) - pad).astype(int)
        x1, y1 = np.ceil(moving.max(0) + [pad, 1.6 * pad]).astype(int)
        self.roi = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
        rx0, ry0, rx1, ry1 = self.roi
        frame = np.array([[x, y] for x in np.linspace(rx0, rx1 - 1, 6) for y in (ry0, ry1 - 1)]
                         + [[x, y] for x in (rx0, rx1 - 1) for y in np.linspace(ry0, ry1 - 1, 6)[1:-1]])
        self._fixed = np.vstack([self.base[list(_ANCHORS)], frame])
        # Triangulate at a half-open mouth so the inner-mouth triangles exist.
        self._points_at = lambda o, s: np.vstack([target_landmarks(self.base, o, s)[list(_MOVING)], self._fixed])
        tri = Delaunay(self._points_at(0.5, 0.0)).simplices
        # Triangles inside the inner lips first: lip triangles drawn later win where they touch.
        inner = set(range(12, 20))  # indices of 60..67 in _MOVING
        self._triangles = np.array(sorted(tri.tolist(), key=lambda t: not set(t) <= inner), np.int64)
        self._source = self._points_at_source()
        # The backward map is computed on a half-resolution grid (the map is continuous, so
        # bilinear upsampling is exact inside triangles and close at their edges).
        hc, wc = (ry1 - ry0 + 1) // 2, (rx1 - rx0 + 1) // 2
        self._coarse = (hc, wc)
        self._gx = (rx0 + 2 * np.arange(wc) + 0.5).astype(np.float32)[None, :, None]
        self._gy = (ry0 + 2 * np.arange(hc) + 0.5).astype(np.float32)[:, None, None]

    def _points_at_source(self) -> np.ndarray:
        return np.vstack([self.base[list(_MOVING)], self._fixed])

    def warp_mouth(self, open_: float, width: float, blur: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The photo with the mouth at ``(open_, width)``: ``(image [H, W, 3] uint8, target
        landmarks [68, 2])``. ``blur`` > 0 smears the mouth region (Gaussian sigma in px)."""
        target = target_landmarks(self.base, open_, width)
        dst = np.vstack([target[list(_MOVING)], self._fixed])
        rx0, ry0, rx1, ry1 = self.roi
        n = len(self._triangles)
        ids = np.full(self._coarse, n, np.int32)  # n: outside every triangle (identity)
        corners = np.round((dst - [rx0, ry0]) * 2.0).astype(np.int32)  # coarse px, 2 fractional bits
        for k, t in enumerate(self._triangles):
            cv2.fillConvexPoly(ids, corners[t], k, shift=2)
        # Affine maps target triangle → source triangle as [x, y, 1] @ A, A: [n + 1, 3, 2].
        d = np.concatenate([dst[self._triangles], np.ones((n, 3, 1))], axis=2)
        s = self._source[self._triangles]
        ok = np.abs(np.linalg.det(d)) > 1e-6
        affine = np.zeros((n + 1, 3, 2))
        affine[:n][ok] = np.linalg.solve(d[ok], s[ok])
        affine[np.append(~ok, True), 0, 0] = 1.0  # degenerate (closed inner) triangles: identity
        affine[np.append(~ok, True), 1, 1] = 1.0
        a = affine.astype(np.float32)[ids]  # [hc, wc, 3, 2]
        coarse = self._gx * a[..., 0, :] + self._gy * a[..., 1, :] + a[..., 2, :]
        maps = cv2.resize(coarse, (2 * self._coarse[1], 2 * self._coarse[0]), interpolation=cv2.INTER_LINEAR)
        maps = maps[: ry1 - ry0, : rx1 - rx0]
        out = self.image.copy()
        map_x, map_y = np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1])
        roi = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if blur > 0:
            roi = self._smear(roi, target, blur)
        out[ry0:ry1, rx0:rx1] = roi
        self._paint_cavity(out, target, open_, blur)
        return out, target

    def _smear(self, roi: np.ndarray, target: np.ndarray, sigma: float) -> np.ndarray:
        """Blur the lips and their surroundings (a face swap that loses lip detail)."""
        rx0, ry0 = self.roi[:2]
        mask = np.zeros(roi.shape[:2], np.float32)
        hull = cv2.convexHull(np.round(target[48:60] - [rx0, ry0]).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0)
        grow = max(3, int(2 * sigma)) | 1
        mask = cv2.GaussianBlur(cv2.dilate(mask, np.ones((grow, grow), np.uint8)), (0, 0), sigma)[..., None]
        blurred = cv2.GaussianBlur(roi, (0, 0), sigma)
        return (roi * (1 - mask) + blurred * mask).astype(np.uint8)

    def _paint_cavity(self, image: np.ndarray, target: np.ndarray, open_: float, blur: float) -> None:
        """Dark mouth cavity with an upper-teeth band inside the target inner-lip polygon."""
        inner = target[60:68]
        gap = float(np.max(inner[[5, 6, 7], 1] - inner[[3, 2, 1], 1]))
        if gap < 0.5:
            return
        x0, y0 = np.floor(inner.min(0)).astype(int) - 4
        x1, y1 = np.ceil(inner.max(0)).astype(int) + 5
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 <= x0 or y1 <= y0:
            return
        patch = image[y0:y1, x0:x1].astype(np.float32)
        scale = 4  # sub-pixel polygon via cv2's shift
        poly = np.round((inner - [x0, y0]) * scale).astype(np.int32)
        mask = np.zeros(patch.shape[:2], np.float32)
        cv2.fillPoly(mask, [poly], 1.0, lineType=cv2.LINE_AA, shift=2)
        # Upper teeth: a band under the upper inner lip, its height growing with the opening.
        teeth = np.zeros_like(mask)
        band = (inner[[1, 2, 3]] - [x0, y0]) + [0, min(0.35 * gap, 0.08 * np.ptp(inner[:, 0]))]
        upper = np.vstack([inner[[0, 1, 2, 3, 4]] - [x0, y0], band[::-1]])
        cv2.fillPoly(teeth, [np.round(upper * scale).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
        teeth *= mask
        shade = np.clip(open_, 0.0, 1.0)
        cavity = np.array([28, 22, 48], np.float32) * (1.2 - 0.4 * shade)
        tooth = np.array([190, 200, 205], np.float32) * (0.75 + 0.15 * shade)
        colour = cavity[None, None] * (1 - teeth[..., None]) + tooth[None, None] * teeth[..., None]
        soft = cv2.GaussianBlur(mask, (0, 0), 0.8 + blur)[..., None]
        patch = patch * (1 - soft) + colour * soft
        image[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)

    def render(self, open_: float, width: float, head: HeadMotion | None = None, t: int = 0,
               blur: float = 0.0) -> np.ndarray:
        """One frame ``[H, W, 3]`` uint8 BGR: mouth at ``(open_, width)``, head pose of frame
        ``t`` of ``head`` (none: still)."""
        frame, _ = self.warp_mouth(open_, width, blur)
        if head is None:
            return frame
        h, w = frame.shape[:2]
        return cv2.warpAffine(frame, head.matrix(t, (w / 2, h / 2)), (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
