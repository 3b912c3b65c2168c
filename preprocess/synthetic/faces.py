"""Face photographs for the synthetic corpus and their augmentation.

Sources (licences in ``faces/README.md``): scikit-image's ``astronaut`` (shipped in the
scikit-image wheel) and four portraits cropped from the test images of the ``face_recognition``
1.3.0 sdist, stored in ``faces/``. Each clip gets an augmented copy of one photo at the output
size: mirror, scale (face width 38–55 % of the frame), crop position, small rotation, colour
(per-channel gain, brightness, gamma, saturation). Five photos are few identities, so each copy
also changes what makes a face look like another person's and a camera like another camera: the
face's width-to-height ratio (±10 %), the size of the mouth region (±15 %, a smooth local
warp), the lips' colour, and the focus (a Gaussian blur of up to 1.2 px). Its 68 landmarks are
then found with dlib on the augmented image itself, so they are exactly what the preprocessing
will see.
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
    aspect: float = 1.0  # horizontal scale of the face relative to vertical
    mouth_scale: float = 1.0  # size of the mouth region relative to the rest of the face
    lip_redness: float = 0.0  # > 0: redder lips, < 0: paler
    focus_blur: float = 0.0  # Gaussian sigma in pixels (0: sharp)

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
            aspect=float(rng.uniform(0.9, 1.1)),
            mouth_scale=float(rng.uniform(0.85, 1.15)),
            lip_redness=float(rng.uniform(-0.15, 0.2)),
            focus_blur=float(rng.uniform(0.0, 1.2)),
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
    m[0] *= aug.aspect  # wider or narrower face, about the face's centre
    m[0, 2] += (1.0 - aug.aspect) * aug.center_x * w
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    lips = marks[48:60] @ m[:, :2].T + m[:, 2]  # outer lip contour in the output image
    out = _scale_mouth(out, lips, aug.mouth_scale)
    out = _tint_lips(out, lips.mean(0) + aug.mouth_scale * (lips - lips.mean(0)), aug.lip_redness)
    hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * aug.saturation, 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    out = out * np.array(aug.gain, np.float32) + aug.brightness
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** aug.gamma
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if aug.focus_blur >= 0.3:  # below that a 3-tap kernel barely changes a pixel
        out = cv2.GaussianBlur(out, (0, 0), aug.focus_blur)
    return out, detect_landmarks(out)


def _scale_mouth(image: np.ndarray, lips: np.ndarray, factor: float) -> np.ndarray:
    """``image`` with the region around the lips (outer contour ``lips`` ``[12, 2]``) scaled by
    ``factor`` about its centre, fading to no change at one mouth width, so nothing tears."""
    if not 0.8 <= factor <= 1.25:
        raise ValueError(f"mouth scale {factor} outside [0.8, 1.25]")
    if abs(factor - 1.0) < 1e-3:
        return image
    center = lips.mean(0)
    radius = np.ptp(lips[:, 0])  # one mouth width: the nose and eyes stay outside
    h, w = image.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    dx, dy = gx - center[0], gy - center[1]
    r = np.sqrt(dx * dx + dy * dy) / radius
    # 1 out to half a radius (the lips, corners included, scale as a whole), a smoothstep down to
    # 0 at the radius; the map stays monotonic for factors in [0.8, 1.25], so nothing folds.
    s = np.clip((1.0 - r) / 0.5, 0.0, 1.0)
    weight = s * s * (3.0 - 2.0 * s)
    local = 1.0 + (factor - 1.0) * weight  # the local magnification
    return cv2.remap(image, (center[0] + dx / local).astype(np.float32), (center[1] + dy / local).astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _tint_lips(image: np.ndarray, lips: np.ndarray, redness: float) -> np.ndarray:
    """``image`` with the lips (outer contour ``lips`` ``[12, 2]``) made redder (``redness`` > 0)
    or paler, feathered over a few pixels."""
    if abs(redness) < 1e-3:
        return image
    mask = np.zeros(image.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(lips).astype(np.int32)], 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.05 * np.ptp(lips[:, 0])))[..., None]
    gain = np.array([1.0 - 0.5 * redness, 1.0 - redness, 1.0 + redness], np.float32)  # BGR
    tinted = np.clip(image.astype(np.float32) * gain, 0, 255)
    return np.round(image * (1.0 - mask) + tinted * mask).astype(np.uint8)
