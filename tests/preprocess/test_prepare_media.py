"""Media IO: timestamp-correct 25 fps resampling, audio on the video's clock, ROI writer."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import soundfile as sf
from prepare_media import frame_at, make_clip

from sf_fairseq.preprocess.media import (
    FrameStream,
    RoiWriter,
    UnreadableMediaError,
    shortfall,
    write_aligned_audio,
)


def write_numbered(path, times, size=(64, 48)):
    """A clip whose frame at time t has brightness round(t * 100) (mjpeg-free: lossless-ish
    big flat frames survive H.264 within a few levels)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        stream.options = {"crf": "0"}
        for t in times:
            level = np.full((size[1], size[0], 3), round(t * 100), np.uint8)
            frame = av.VideoFrame.from_ndarray(level, format="bgr24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def nearest_levels(times, n_out):
    times = np.asarray(times)
    return [round(times[np.argmin(np.abs(times - times[0] - k / 25))] * 100) for k in range(n_out)]


def test_30fps_is_resampled_to_25fps_by_nearest_timestamp(tmp_path):
    times = [i / 30 for i in range(60)]  # 2.0 s
    write_numbered(tmp_path / "a.mp4", times)
    stream = FrameStream(tmp_path / "a.mp4", "gray")
    levels = [int(np.median(f)) for f in stream]
    assert stream.info.n_frames == len(levels) == 50
    assert stream.info.source_fps == pytest.approx(30, abs=0.01)
    np.testing.assert_allclose(levels, nearest_levels(times, 50), atol=1)


def test_variable_frame_rate_keeps_time(tmp_path):
    rng = np.random.default_rng(1)
    steps = rng.choice([0.0213, 0.0337, 0.0519, 0.0871], size=40)  # ~11 to ~47 fps
    times = list(np.round(np.concatenate([[0], np.cumsum(steps)[:-1]]), 3))
    write_numbered(tmp_path / "vfr.mkv", times)
    stream = FrameStream(tmp_path / "vfr.mkv", "gray")
    levels = [int(np.median(f)) for f in stream]
    duration = times[-1] + steps[-1]
    assert abs(len(levels) - duration * 25) <= 1
    np.testing.assert_allclose(levels[:-1], nearest_levels(times, len(levels))[:-1], atol=1)


def test_bgr_frames_and_max_frames(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", seconds=1.0, fps=25, audio_rate=None)
    frames = list(FrameStream(clip, "bgr24", max_frames=10))
    assert len(frames) == 10 and frames[0].shape == (192, 256, 3) and frames[0].dtype == np.uint8


def test_unreadable_and_no_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UnreadableMediaError, match="bad.mp4"):
        list(FrameStream(bad))
    wav = tmp_path / "only_audio.wav"
    sf.write(wav, np.zeros(1600, np.int16), 16000)
    with pytest.raises(UnreadableMediaError, match="no video stream"):
        list(FrameStream(wav))


@pytest.mark.parametrize("rate,channels", [(48000, 2), (44100, 1), (16000, 1)])
def test_audio_becomes_16k_mono_of_exact_length_and_keeps_sync(tmp_path, rate, channels):
    clip = make_clip(tmp_path / "a.mp4", seconds=2.0, fps=30, audio_rate=rate,
                     audio_channels=channels, beep_at=1.0)
    out = tmp_path / "a.wav"
    info = write_aligned_audio(clip, out, start_time=0.0, n_samples=50 * 640)
    samples, sr = sf.read(out, dtype="int16")
    assert sr == 16000 and samples.ndim == 1 and len(samples) == 32000 == info.n_samples
    assert info.source_rate == rate and info.source_channels == channels
    onset = np.flatnonzero(np.abs(samples) > 8000)[0]
    assert abs(onset - 16000) < 16000 * 0.01  # within 10 ms of 1.0 s


def test_late_audio_is_padded_to_stay_in_sync(tmp_path):
    clip = make_clip(tmp_path / "late.mkv", seconds=2.0, fps=25, audio_start=0.4, beep_at=1.0)
    out = tmp_path / "late.wav"
    info = write_aligned_audio(clip, out, start_time=0.0, n_samples=32000)
    samples, _ = sf.read(out, dtype="int16")
    assert info.offset_samples == pytest.approx(0.4 * 16000, abs=16)
    assert np.abs(samples[:6000]).max() == 0  # nothing before the audio starts
    onset = np.flatnonzero(np.abs(samples) > 8000)[0]
    assert abs(onset - 16000) < 160


def test_roi_writer_reads_back_in_opencv_at_25fps(tmp_path):
    path = tmp_path / "roi.mp4"
    rng = np.random.default_rng(0)
    frames = [np.full((96, 96, 3), 10 * i, np.uint8) + rng.integers(0, 5, (96, 96, 3), dtype=np.uint8)
              for i in range(20)]
    with RoiWriter(path, 96, 96) as writer:
        for frame in frames:
            writer.write(frame)
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FPS) == 25
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    assert len(decoded) == 20 and decoded[0].shape == (96, 96, 3)
    np.testing.assert_allclose([f.mean() for f in decoded], [f.mean() for f in frames], atol=4.5)


def test_a_cut_file_decodes_short_of_its_stated_duration(tmp_path):
    # The index (moov) before the data: a download cut in half still opens and decodes.
    full = make_clip(tmp_path / "full.mp4", seconds=3.0, fps=25, faces=0, faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    stream = FrameStream(full)
    assert len(list(stream)) == 75
    assert stream.info.end_time == pytest.approx(3.0) and stream.info.stated_end == pytest.approx(3.0)
    assert shortfall(stream.info.end_time, stream.info.stated_end, 0.0) is None
    stream = FrameStream(cut)
    assert len(list(stream)) < 60
    assert stream.info.stated_end == pytest.approx(3.0)
    assert shortfall(stream.info.end_time, stream.info.stated_end, 0.0) > 1.0
    # The audio of the cut file, asked for longer than the video, runs out where the file ends.
    info = write_aligned_audio(cut, tmp_path / "cut.wav", 0.0, 75 * 640)
    assert info.stated_end == pytest.approx(3.0, abs=0.05)
    assert info.decoded_end < 2.4 and shortfall(info.decoded_end, info.stated_end, 0.0)
    complete = write_aligned_audio(full, tmp_path / "full.wav", 0.0, 75 * 640)
    assert complete.decoded_end is None  # filled the wav: not run out


def test_shortfall_tolerance():
    assert shortfall(9.6, 10.0, 0.0) is None  # 0.4 s: within 0.5 s
    assert shortfall(9.4, 10.0, 0.0) == pytest.approx(0.6)
    assert shortfall(98.5, 100.0, 0.0) is None  # 1.5 s of 100 s: within 2 %
    assert shortfall(97.5, 100.0, 0.0) == pytest.approx(2.5)
    assert shortfall(1.0, None, 0.0) is None  # nothing stated, nothing to compare


@pytest.mark.parametrize("rotation", [90, -90, 270])
def test_rotated_video_is_turned_upright(tmp_path, rotation):
    # A portrait canvas stored sideways with a display matrix, as a phone writes it.
    clip = make_clip(tmp_path / "portrait.mp4", seconds=0.2, fps=25, size=(144, 192),
                     audio_rate=None, rotation=rotation)
    with av.open(str(clip)) as container:  # stored sideways
        stored = container.streams.video[0]
        assert (stored.width, stored.height) == (192, 144)
    stream = FrameStream(clip, "bgr24")
    frames = list(stream)
    assert frames[0].shape == (192, 144, 3) and frames[0].flags["C_CONTIGUOUS"]
    upright = frame_at(0.0, (144, 192), faces=1)
    assert np.abs(frames[0].astype(int) - upright).mean() < 6  # turned the right way
    assert stream.info.rotation == (rotation + 180) % 360 - 180
    assert (stream.info.width, stream.info.height) == (144, 192)
