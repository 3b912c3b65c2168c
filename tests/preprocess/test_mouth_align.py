"""Mouth alignment: similarity transform, interpolation, smoothing and crop against the
reference algorithm (skimage's estimate_transform/warp and the reference's 12-frame queue)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from skimage import data
from skimage import transform as sktf

from sf_fairseq.preprocess.faces import FaceDetector, LandmarkPredictor
from sf_fairseq.preprocess.mean_face import MEAN_FACE_PATH, load_mean_face
from sf_fairseq.preprocess.mouth_align import (
    MOUTH_POINTS,
    STABLE_POINTS,
    apply_affine,
    crop_mouth,
    interpolate_landmarks,
    mouth_crop_matrices,
    similarity_transform,
)

STABLE = list(STABLE_POINTS)


@pytest.fixture(scope="module")
def astronaut():
    """(BGR image, its 68 dlib landmarks)."""
    bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    gray = np.ascontiguousarray(data.astronaut().mean(axis=2).astype(np.uint8))
    boxes, _ = FaceDetector()(gray)
    return bgr, LandmarkPredictor()(gray, boxes[0])


def test_mean_face_is_the_shared_reference_shape(shared_dir):
    mean_face = load_mean_face()
    assert mean_face.shape == (68, 2) and mean_face.dtype == np.float64
    np.testing.assert_array_equal(mean_face, np.load(shared_dir / "data" / "mean_face_68.npy"))
    assert (MEAN_FACE_PATH.parent / "README.md").read_text().count("20words_mean_face") == 1


@pytest.mark.parametrize("seed", range(5))
def test_similarity_transform_matches_skimage(seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 500, (5, 2))
    angle, scale = rng.uniform(-0.5, 0.5), rng.uniform(0.3, 3)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + rng.uniform(-50, 50, 2) + rng.normal(0, 3, (5, 2))  # noisy: least squares
    expected = sktf.SimilarityTransform.from_estimate(src, dst)
    np.testing.assert_allclose(similarity_transform(src, dst), expected.params[:2], atol=1e-9)


def test_similarity_transform_on_real_landmarks_matches_skimage(astronaut):
    _, landmarks = astronaut
    mean_face = load_mean_face()
    expected = sktf.estimate_transform("similarity", landmarks[STABLE].astype(float), mean_face[STABLE])
    ours = similarity_transform(landmarks[STABLE], mean_face[STABLE])
    np.testing.assert_allclose(ours, expected.params[:2], atol=1e-9)
    np.testing.assert_allclose(apply_affine(ours, landmarks), expected(landmarks), atol=1e-6)


def test_interpolation_is_linear_inside_and_copies_at_the_edges():
    lm = np.full((6, 68, 2), np.nan)
    lm[1], lm[4] = 10.0, 40.0
    out = interpolate_landmarks(lm)
    np.testing.assert_allclose(out[:, 0, 0], [10, 10, 20, 30, 40, 40])
    with pytest.raises(ValueError, match="no frame"):
        interpolate_landmarks(np.full((3, 68, 2), np.nan))


def reference_crops(frames, landmarks, mean_face, window=12):
    """The reference's crop_patch (deque of 12, tail reuses the last transform), with skimage."""
    crops, q_frames, q_landmarks = [], deque(), deque()
    trans = None

    def cut(img, points):
        cx, cy = np.mean(points, axis=0)
        cy, cx = min(max(cy, 48), 256 - 48), min(max(cx, 48), 256 - 48)
        return img[int(round(cy) - 48):int(round(cy) + 48), int(round(cx) - 48):int(round(cx) + 48)]

    def warp(tform, frame):
        return (sktf.warp(frame, inverse_map=tform.inverse, output_shape=(256, 256)) * 255).astype(np.uint8)

    for idx, (frame, lm) in enumerate(zip(frames, landmarks)):
        q_landmarks.append(lm)
        q_frames.append(frame)
        if len(q_frames) == window:
            smoothed = np.mean(q_landmarks, axis=0)
            cur_lm, cur_frame = q_landmarks.popleft(), q_frames.popleft()
            trans = sktf.estimate_transform("similarity", smoothed[STABLE], mean_face[STABLE])
            crops.append(cut(warp(trans, cur_frame), trans(cur_lm)[MOUTH_POINTS]))
        if idx == len(landmarks) - 1:
            while q_frames:
                crops.append(cut(warp(trans, q_frames.popleft()), trans(q_landmarks.popleft())[MOUTH_POINTS]))
    return np.stack(crops)


def test_crops_match_the_reference_algorithm(astronaut):
    bgr, landmarks = astronaut
    rng = np.random.default_rng(0)
    n = 16
    # A face moving and jittering: shifted copies of the image and of its landmarks.
    shifts = np.cumsum(rng.integers(-3, 4, (n, 2)), axis=0)
    frames = [np.roll(bgr, tuple(s[::-1]), axis=(0, 1)) for s in shifts]
    track = landmarks[None].astype(np.float64) + shifts[:, None] + rng.normal(0, 0.7, (n, 68, 2))
    mean_face = load_mean_face()
    matrices, centres = mouth_crop_matrices(track, mean_face)
    ours = np.stack([crop_mouth(f, m) for f, m in zip(frames, matrices)])
    expected = reference_crops(frames, track, mean_face)
    assert ours.shape == expected.shape == (n, 96, 96, 3)
    diff = np.abs(ours.astype(int) - expected)
    # skimage truncates to uint8 where OpenCV rounds, and bilinear weights are quantised in OpenCV.
    assert diff.max() <= 3 and diff.mean() < 0.8
    # The tolerance is tight enough to notice a 2-pixel misplacement of the landmarks.
    moved, _ = mouth_crop_matrices(track + 2.0, mean_face)
    wrong = np.stack([crop_mouth(f, m) for f, m in zip(frames, moved)])
    assert np.abs(wrong.astype(int) - expected).mean() > 2 * diff.mean()


def test_short_clip_uses_the_mean_of_all_frames_and_centre_is_clamped():
    mean_face = load_mean_face()
    track = np.repeat(mean_face[None], 3, axis=0)
    track[:, MOUTH_POINTS, 1] += 200  # mouth far below: the crop must stay inside 256x256
    matrices, centres = mouth_crop_matrices(track, mean_face)
    assert matrices.shape == (3, 2, 3)
    np.testing.assert_allclose(centres[:, 1], 256 - 48)
    # identity alignment (the track is the mean face): the crop origin is just shifted
    np.testing.assert_allclose(matrices[0][:, :2], np.eye(2), atol=1e-6)
