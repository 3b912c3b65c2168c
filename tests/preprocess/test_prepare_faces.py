"""Face detection and tracking: following faces between detections must stay where detecting
on every frame would put the ROI, and several faces must stay apart."""

from __future__ import annotations

import numpy as np
import pytest
from prepare_media import frame_at, make_clip

from sf_fairseq.preprocess.faces import FaceDetector, FaceTracker, LandmarkPredictor, iou, model_path
from sf_fairseq.preprocess.mean_face import load_mean_face
from sf_fairseq.preprocess.mouth_align import mouth_crop_matrices
from sf_fairseq.preprocess.prepare_engine import InputItem, PrepareOptions, VideoPreprocessor


def gray(bgr):
    return np.ascontiguousarray(bgr.mean(axis=2).astype(np.uint8))


@pytest.fixture(scope="module")
def predictor():
    return LandmarkPredictor()


def roi_centres(npz_path):
    landmarks = np.load(npz_path)["landmarks"][0]
    matrices, _ = mouth_crop_matrices(landmarks, load_mean_face())
    return np.array([np.linalg.solve(np.vstack([m, [0, 0, 1]]), [48, 48, 1])[:2] for m in matrices])


def test_model_files_are_found():
    assert model_path("shape_predictor_68_face_landmarks.dat").endswith(".dat")
    with pytest.raises(FileNotFoundError, match="no_such"):
        model_path("no_such_model.dat")


def test_iou():
    a = np.array([0, 0, 10, 10.0])
    assert iou(a, a) == 1 and iou(a, a + 20) == 0
    assert iou(a, np.array([5, 0, 15, 10.0])) == pytest.approx(1 / 3)


def test_tracking_stays_within_2px_of_detecting_every_frame(tmp_path):
    # A face big enough for the detector without upsampling keeps the every-frame run fast.
    clip = make_clip(tmp_path / "move.mp4", seconds=1.6, fps=25, audio_rate=None,
                     size=(320, 240), face_height=230)
    centres = {}
    for every in (1, 8):
        processor = VideoPreprocessor(PrepareOptions(detect_every=every, upsample=0))
        record = processor.process(InputItem(f"e{every}", str(clip)), tmp_path / "out")
        assert record["status"] == "no_audio"  # the ROI is written all the same
        centres[every] = roi_centres(tmp_path / "out" / record["landmarks"])
    distance = np.linalg.norm(centres[1] - centres[8], axis=1)
    assert distance.max() < 2.0, distance
    assert np.ptp(centres[1][:, 0]) > 3  # the face moved, so following it had work to do


def test_tracker_keeps_faces_apart_and_ignores_weak_detections(predictor):
    tracker = FaceTracker(FaceDetector(), predictor, detect_every=5)
    for i in range(12):
        tracker.update(gray(frame_at(i / 25, (400, 192), faces=2)))
    tracks = tracker.tracks()
    assert len(tracks) == 2 and all(len(t.frames) == 12 for t in tracks)
    left, right = (t.landmarks[:, :, 0].mean() for t in tracks)
    assert abs(right - left) > 150
    # A start threshold above any HOG margin: nothing is tracked.
    strict = FaceTracker(FaceDetector(), predictor, detect_every=5, start_score=10.0)
    for i in range(6):
        strict.update(gray(frame_at(i / 25, (256, 192), faces=1)))
    assert strict.tracks() == []


def test_a_face_that_leaves_ends_its_track_and_noise_gives_none(predictor):
    tracker = FaceTracker(FaceDetector(), predictor, detect_every=4)
    face = [gray(frame_at(i / 25, (256, 192), faces=1)) for i in range(8)]
    noise = [gray(frame_at(0, (256, 192), faces=0, noise_seed=i)) for i in range(16)]
    for frame in face + noise:
        tracker.update(frame)
    (track,) = tracker.tracks()
    # Followed on the face frames only: what was followed blindly after the face left is dropped.
    assert track.frames.tolist() == list(range(8))


def test_cnn_detector_is_the_fallback_where_hog_finds_nothing():
    import cv2
    from skimage import data

    image = cv2.resize(gray(data.astronaut()), (400, 400), interpolation=cv2.INTER_AREA)
    detector = FaceDetector(max_side=400, upsample=0, cnn=True)

    class NoHog:
        def run(self, image, upsample, threshold):
            return [], [], []

    detector._hog = NoHog()  # as if HOG missed the face
    boxes, scores = detector(image)
    assert len(boxes) == 1 and scores[0] > 0
    x0, y0, x1, y1 = boxes[0]
    assert 120 < (x0 + x1) / 2 < 240 and 40 < (y0 + y1) / 2 < 160  # the astronaut's face
    assert len(FaceDetector(max_side=400, upsample=0)(np.full((400, 400), 128, np.uint8))[0]) == 0
