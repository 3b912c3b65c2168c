"""Face augmentation beyond the five photos' identities: face shape, mouth size, lip colour, focus."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sf_fairseq.preprocess.synthetic.faces import FACE_SOURCES, Augmentation, augment

SIZE = (320, 320)
PLAIN = Augmentation(source="obama", mirror=False, face_width=0.48, center_x=0.5, center_y=0.5, angle=0.0,
                     gain=(1.0, 1.0, 1.0), brightness=0.0, gamma=1.0, saturation=1.0)


def _mouth_width(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[54] - landmarks[48]))


def _jaw_width_over_height(landmarks: np.ndarray) -> float:
    return float(np.ptp(landmarks[:17, 0]) / (landmarks[8, 1] - landmarks[27, 1]))


def test_neutral_new_fields_leave_the_photo_as_before() -> None:
    """Metadata written before these fields existed describes the same image."""
    explicit = replace(PLAIN, aspect=1.0, mouth_scale=1.0, lip_redness=0.0, focus_blur=0.0)
    assert np.array_equal(augment(PLAIN, SIZE)[0], augment(explicit, SIZE)[0])


def test_mouth_scale_changes_the_mouth_and_not_the_face() -> None:
    small, large = (augment(replace(PLAIN, mouth_scale=s), SIZE)[1] for s in (0.85, 1.15))
    assert _mouth_width(large) / _mouth_width(small) == pytest.approx(1.15 / 0.85, rel=0.08)
    # The eyes (outside the warped region) stay where they were (to dlib's pixel noise).
    assert np.abs(large[36:48].mean(0) - small[36:48].mean(0)).max() < 1.5


def test_aspect_widens_the_face() -> None:
    narrow, wide = (augment(replace(PLAIN, aspect=a), SIZE)[1] for a in (0.9, 1.1))
    assert _jaw_width_over_height(wide) / _jaw_width_over_height(narrow) == pytest.approx(1.1 / 0.9, rel=0.06)


def test_lip_redness_and_focus_change_the_lips_and_sharpness() -> None:
    base, marks = augment(PLAIN, SIZE)
    red = augment(replace(PLAIN, lip_redness=0.2), SIZE)[0].astype(float)
    x0, y0 = marks[48:60].min(0).astype(int)
    x1, y1 = marks[48:60].max(0).astype(int)
    lips = (slice(y0, y1), slice(x0, x1))
    assert red[lips][..., 2].mean() > base[lips][..., 2].mean() + 3  # more red (BGR)
    assert np.abs(red[:60] - base[:60]).max() == 0  # nothing far from the lips changes
    blurred = augment(replace(PLAIN, focus_blur=1.2), SIZE)[0].astype(float)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.9 * np.abs(np.diff(base.astype(float), axis=1)).mean()


def test_random_augmentations_keep_a_detectable_face() -> None:
    rng = np.random.default_rng(1)
    for _ in range(12):
        aug = Augmentation.random(rng, FACE_SOURCES)
        assert 0.9 <= aug.aspect <= 1.1 and 0.85 <= aug.mouth_scale <= 1.15
        image, marks = augment(aug, SIZE)  # raises NoFaceError if dlib loses the face
        assert image.shape == (SIZE[1], SIZE[0], 3) and marks.shape == (68, 2)
