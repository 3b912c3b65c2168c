"""Face photographs for the synthetic corpus and their augmentation.

Sources (licences in ``faces/README.md``): scikit-image's ``astronaut`` (shipped in the
scikit-image wheel) and four portraits cropped from the test images of the ``face_recognition``
1.3.0 sdist, stored in ``faces/``. Each clip gets an augmented copy of one photo at the output
size: mirror, scale (face width 38–55 % of the frame), crop position, small rotation, colour
(per-channel gain, brightness, gamma, saturation). Its 68 landmarks are then found with dlib on
the augmented image itself, so they are exactly what the preprocessing will see.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

from sf_fairseq.preprocess.faces import LANDMARKS_68, model_path

FACES_DIR = Path(__file__).with_name("faces")
PHOTO_FILES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
FACE_SOURCES = ("astronaut",) + tuple(Path(f).stem for f in PHOTO_FILES)


class NoFaceError(RuntimeError):
    """dlib found no face in a photo."""


@functools.lru_cache(maxsize=1)
def _dlib_models() -> tuple:
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(model_path(LANDMARKS_68))


def detect_landmarks(bgr: np.ndarray, upsample: int = 1) -> np.ndarray:
    """68 landmarks ``[68, 2]`` float64 of the largest face found by dlib's HOG detector.

    Raises:
        NoFaceError: no face found.
    """
    detector, predictor = _dlib_models()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    boxes = detector(gray, upsample)
    if len(boxes) == 0:
        raise NoFaceError("no face found")
    box = max(boxes, key=lambda r: r.area())
    shape = predictor(gray, box)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


@functools.lru_cache(maxsize=None)
def load_photo(source: str) -> tuple[np.ndarray, np.ndarray]:
    """A face photo by name (see :data:`FACE_SOURCES`): ``(BGR uint8 image, landmarks [68, 2])``."""
    if source == "astronaut":
        from skimage import data

        image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    elif source in FACE_SOURCES:
        path = FACES_DIR / f"{source}.jpg"
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError(f"cannot read face photo {path}")
    else:
        raise ValueError(f"unknown face source {source!r}; choose from {FACE_SOURCES}")
    return image, detect_landmarks(image)


@dataclass(frozen=True)
class Augmentation:
    """Parameters of one augmented copy of a photo (recorded in the corpus metadata)."""

    source: str
    mirror: bool
    face_width: float  # eye-corner-to-eye-corner-based face width / frame width
    center_x: float  # face centre in the frame, fraction of width
    center_y: float
    angle: float  # degrees
    gain: tuple[float, float, float]  # BGR
    brightness: float
    gamma: float
    saturation: float

    @staticmethod
    def random(rng: np.random.Generator, sources: tuple[str, ...] = FACE_SOURCES) -> "Augmentation":
        return Augmentation(
            source=str(sources[int(rng.integers(len(sources)))]),
            mirror=bool(rng.random() < 0.5),
            face_width=float(rng.uniform(0.38, 0.55)),
            center_x=float(rng.uniform(0.44, 0.56)),
            center_y=float(rng.uniform(0.44, 0.54)),
            angle=float(rng.uniform(-5, 5)),
            gain=tuple(float(g) for g in rng.uniform(0.88, 1.12, 3)),
            brightness=float(rng.uniform(-15, 15)),
            gamma=float(rng.uniform(0.8, 1.25)),
            saturation=float(rng.uniform(0.7, 1.2)),
        )

    def metadata(self) -> dict:
        return asdict(self)


def augment(aug: Augmentation, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The photo ``aug.source`` augmented to an image of ``size = (width, height)``, with its
    68 landmarks found anew: ``(BGR uint8 [H, W, 3], landmarks [68, 2])``.

    Raises:
        NoFaceError: dlib finds no face in the augmented image.
    """
    image, marks = load_photo(aug.source)
    w, h = size
    if aug.mirror:
        image = np.ascontiguousarray(image[:, ::-1])
        marks = marks.copy()
        marks[:, 0] = image.shape[1] - 1 - marks[:, 0]
    face_w = np.ptp(marks[:17, 0])  # jaw line extent
    center = marks[[27, 8]].mean(0)  # between nose bridge and chin
    scale = aug.face_width * w / face_w
    m = cv2.getRotationMatrix2D(tuple(center), aug.angle, scale)
    m[:, 2] += [aug.center_x * w - center[0], aug.center_y * h - center[1]]
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * aug.saturation, 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    out = out * np.array(aug.gain, np.float32) + aug.brightness
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** aug.gamma
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out, detect_landmarks(out)
