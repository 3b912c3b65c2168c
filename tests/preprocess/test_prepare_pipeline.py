"""End to end: generated clips with a real face → ROI videos, wavs, landmarks, records."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import soundfile as sf
from prepare_media import make_clip

from sf_fairseq.data.video import load_video_frames
from sf_fairseq.preprocess.mean_face import load_mean_face
from sf_fairseq.preprocess.mouth_align import mouth_crop_matrices
from sf_fairseq.preprocess.prepare_engine import InputItem, PrepareOptions, VideoPreprocessor


@pytest.fixture(scope="module")
def preprocessor():
    return VideoPreprocessor(PrepareOptions())


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    return np.stack(frames), fps, count


def roi_centres(npz_path, track=0):
    """Source-pixel position of each frame's ROI centre."""
    landmarks = np.load(npz_path)["landmarks"][track]
    matrices, _ = mouth_crop_matrices(landmarks, load_mean_face())
    out = []
    for m in matrices:
        full = np.vstack([m, [0, 0, 1]])
        out.append(np.linalg.solve(full, [48, 48, 1])[:2])
    return np.array(out)


@pytest.mark.parametrize(
    "name,fps,rate,channels",
    [("a25.mp4", 25, 48000, 2), ("b30.mkv", 30, 44100, 1), ("c30.mov", 29.97, 48000, 2)],
)
def test_clip_gives_96px_25fps_roi_and_matching_wav(tmp_path, preprocessor, name, fps, rate, channels):
    clip = make_clip(tmp_path / name, seconds=1.2, fps=fps, audio_rate=rate, audio_channels=channels)
    record = preprocessor.process(InputItem("x/clip", str(clip)), tmp_path / "out")
    assert record["status"] == "ok", record
    assert record["n_frames"] == 30 and record["n_samples"] == 30 * 640
    assert record["source_fps"] == pytest.approx(fps, rel=0.01)
    roi = tmp_path / "out" / record["tracks"][0]["video"]
    frames, roi_fps, count = read_video(roi)
    assert roi_fps == 25 and count == len(frames) == 30 and frames.shape[1:] == (96, 96, 3)
    assert load_video_frames(roi).shape == (30, 96, 96)  # what the training loader sees
    samples, sr = sf.read(tmp_path / "out" / record["audio"], dtype="int16")
    assert sr == 16000 and samples.ndim == 1
    assert len(samples) / sr == pytest.approx(len(frames) / 25)  # same duration
    landmarks = np.load(tmp_path / "out" / record["landmarks"])["landmarks"]
    assert landmarks.shape == (1, 30, 68, 2)
    assert np.isfinite(landmarks).all()  # the face was followed on every frame
    # The crop holds the mouth: the landmarks' mouth centre maps near the ROI centre, and lips
    # (redder than skin) fill its middle.
    mouth = landmarks[0, :, 48:68].mean(axis=1)
    assert np.abs(mouth - roi_centres(tmp_path / "out" / record["landmarks"])).max() < 6
    centre = frames[:, 40:60, 30:66].astype(float)
    assert (centre[..., 2] - centre[..., 1]).mean() > 20  # red minus green: lips/teeth, not grey


def test_two_faces_give_two_tracks(tmp_path, preprocessor):
    clip = make_clip(tmp_path / "two.mp4", seconds=1.2, fps=25, faces=2, size=(400, 192))
    record = preprocessor.process(InputItem("two", str(clip)), tmp_path / "out")
    assert record["status"] == "ok", record
    tracks = record["tracks"]
    assert [t["track"] for t in tracks] == [0, 1]
    assert [t["id"] for t in tracks] == ["two__track0", "two__track1"]
    assert all(t["face_frames"] == 30 for t in tracks)
    xs = [roi_centres(tmp_path / "out" / record["landmarks"], k)[:, 0].mean() for k in (0, 1)]
    assert abs(xs[0] - xs[1]) > 150  # one per astronaut, not the same face twice
    for t in tracks:
        frames, fps, _ = read_video(tmp_path / "out" / t["video"])
        assert len(frames) == 30 and fps == 25


def test_audio_that_starts_late_stays_in_sync(tmp_path, preprocessor):
    clip = make_clip(tmp_path / "late.mkv", seconds=1.6, fps=30, audio_start=0.3, beep_at=1.2)
    record = preprocessor.process(InputItem("late", str(clip)), tmp_path / "out")
    assert record["status"] == "ok" and record["audio_offset_s"] == pytest.approx(0.3, abs=0.002)
    assert record["notes"] == ["audio covers 1.30 s of the 1.60 s video; the rest is silence"]
    samples, _ = sf.read(tmp_path / "out" / record["audio"], dtype="int16")
    onset = np.flatnonzero(np.abs(samples) > 8000)[0] / 16000
    assert onset == pytest.approx(1.2, abs=0.01)


def test_short_audio_is_padded_and_noted(tmp_path, preprocessor):
    clip = make_clip(tmp_path / "gap.mkv", seconds=1.6, fps=25, audio_start=0.8)
    record = preprocessor.process(InputItem("gap", str(clip)), tmp_path / "out")
    assert record["status"] == "ok" and record["n_samples"] == 40 * 640
    assert any("audio covers 0.80 s of the 1.60 s video" in note for note in record["notes"])
