"""Video loading (cv2, grayscale) and the clip transforms."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sf_fairseq.data.video import (
    CenterCrop,
    HorizontalFlip,
    Normalize,
    RandomCrop,
    VideoReadError,
    VideoTransform,
    load_video_frames,
)


def _write_video(path, frames_bgr, fps=25):
    h, w = frames_bgr.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames_bgr:
        writer.write(frame)
    writer.release()


def test_load_video_frames_grayscale_count_and_content(tmp_path):
    t = 12
    frames = np.zeros((t, 96, 96, 3), np.uint8)
    frames[..., 0] = 40  # B
    frames[..., 1] = 120  # G
    frames[..., 2] = 200  # R
    frames[:, :, 48:] //= 2  # right half darker, to see orientation
    _write_video(tmp_path / "v.mp4", frames)
    gray = load_video_frames(tmp_path / "v.mp4")
    assert gray.dtype == np.uint8 and gray.shape == (t, 96, 96)
    expected = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    # lossy codec: compare away from the edge between halves
    assert abs(float(gray[:, 10:86, 5:40].mean()) - float(expected[10:86, 5:40].mean())) < 4
    assert abs(float(gray[:, 10:86, 56:90].mean()) - float(expected[10:86, 56:90].mean())) < 4


def test_load_video_frames_errors_name_path(tmp_path):
    with pytest.raises(VideoReadError, match="nope.mp4"):
        load_video_frames(tmp_path / "nope.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(VideoReadError, match="bad.mp4"):
        load_video_frames(tmp_path / "bad.mp4")


def test_center_crop_offsets():
    frames = np.arange(2 * 96 * 97, dtype=np.int64).reshape(2, 96, 97)
    out = CenterCrop(88)(frames)
    np.testing.assert_array_equal(out, frames[:, 4:92, 4:92])  # floor((97-88)/2) = 4
    with pytest.raises(ValueError, match="cannot crop"):
        CenterCrop(100)(frames)


def test_random_crop_is_shared_over_time_and_covers_offsets():
    base = np.arange(96 * 96, dtype=np.int64).reshape(96, 96)
    frames = np.stack([base, base + 1])
    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(300):
        out = RandomCrop(88)(frames, rng)
        assert out.shape == (2, 88, 88)
        np.testing.assert_array_equal(out[1], out[0] + 1)
        offsets.add(divmod(int(out[0, 0, 0]), 96))
    rows = {r for r, _ in offsets}
    cols = {c for _, c in offsets}
    assert rows == set(range(9)) and cols == set(range(9))


def test_horizontal_flip_probability_and_mirror():
    frames = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    rng = np.random.default_rng(1)
    flipped = 0
    for _ in range(1000):
        out = HorizontalFlip(0.5)(frames, rng)
        if not np.array_equal(out, frames):
            np.testing.assert_array_equal(out, frames[:, :, ::-1])
            flipped += 1
    assert 430 < flipped < 570
    assert np.array_equal(HorizontalFlip(0.0)(frames, rng), frames)


def test_eval_transform_values():
    frames = np.random.default_rng(2).integers(0, 256, (5, 96, 96)).astype(np.uint8)
    out = VideoTransform.eval(88, 0.421, 0.165)(frames)
    assert out.dtype == np.float32 and out.shape == (5, 88, 88)
    ref = ((frames / 255.0 - 0.421) / 0.165)[:, 4:92, 4:92]
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(Normalize(1.0, 2.0)(np.array([5.0])), [2.0])


def test_train_transform_is_a_crop_or_mirrored_crop_and_seeded():
    frames = np.random.default_rng(3).integers(0, 256, (4, 96, 96)).astype(np.uint8)
    scaled = (frames / 255.0 - 0.421) / 0.165
    t = VideoTransform.train(88, 0.421, 0.165, rng=np.random.default_rng(5))
    out = t(frames)
    assert out.dtype == np.float32 and out.shape == (4, 88, 88)
    candidates = [
        c for dy in range(9) for dx in range(9)
        for c in (scaled[:, dy:dy + 88, dx:dx + 88], scaled[:, dy:dy + 88, dx:dx + 88][:, :, ::-1])
    ]
    assert any(np.allclose(out, c, atol=1e-5) for c in candidates)
    again = VideoTransform.train(88, 0.421, 0.165, rng=np.random.default_rng(5))(frames)
    np.testing.assert_array_equal(out, again)
    others = [t(frames, np.random.default_rng(seed)) for seed in range(6, 12)]
    assert any(not np.array_equal(out, o) for o in others)
