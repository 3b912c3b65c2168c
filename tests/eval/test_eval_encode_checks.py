"""load_clip refuses degenerate clips and names missing or wrong inputs plainly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sf_fairseq.data.video import VideoReadError
from sf_fairseq.eval import encode
from sf_fairseq.preprocess.prepare_engine import PrepareOptions


def write_wav(path: Path, n_samples: int) -> Path:
    rng = np.random.default_rng(0)
    sf.write(path, (3000 * rng.standard_normal(n_samples)).astype(np.int16), 16000, subtype="PCM_16")
    return path


def test_minimum_is_the_one_prepare_applies() -> None:
    assert encode.MIN_FRAMES == PrepareOptions.min_frames


@pytest.mark.parametrize("n_frames,n_samples", [(1, 16000), (3, 96000), (4, 401), (11, 7040), (50, 7000)])
def test_degenerate_clips_are_refused(tmp_path: Path, roi_clip, n_frames: int, n_samples: int) -> None:
    video, wav = roi_clip(tmp_path / "short.mp4", n_frames=n_frames)
    write_wav(wav, n_samples)
    with pytest.raises(encode.ClipLengthError, match=rf"too short.*video {n_frames} frames.*audio {n_samples} samples"):
        encode.load_clip(str(video), str(wav))


def test_shortest_clip_prepare_keeps_is_scored(tmp_path: Path, roi_clip) -> None:
    video, wav = roi_clip(tmp_path / "twelve.mp4", n_frames=12)
    clip = encode.load_clip(str(video), str(wav))
    assert clip.video.shape[0] == 12 and clip.audio.shape[0] == 12


def test_streams_of_different_durations_are_refused(tmp_path: Path, roi_clip) -> None:
    video, wav = roi_clip(tmp_path / "v.mp4", n_frames=50, seconds=4.0)
    with pytest.raises(encode.ClipLengthError, match=r"video 2\.00 s .*audio 4\.00 s"):
        encode.load_clip(str(video), str(wav))


@pytest.mark.parametrize(
    "n_frames,audio_s,max_seconds,ok",
    [
        (50, 2.5, None, True),  # 0.5 s apart: the absolute tolerance
        (50, 2.52, None, False),
        (250, 10.9, None, True),  # 10 s vs 10.9 s: within 10 % of the longer
        (250, 11.2, None, False),
        (1500, 55.0, 50.0, True),  # 60 s video, 55 s audio: both capped at 50 s
        (1500, 30.0, 50.0, False),
        (1500, 30.0, None, False),
    ],
)
def test_length_tolerance(n_frames: int, audio_s: float, max_seconds: float | None, ok: bool) -> None:
    n_samples = int(round(audio_s * 16000))
    if ok:
        encode.check_clip_lengths(n_frames, n_samples, max_seconds=max_seconds)
    else:
        with pytest.raises(encode.ClipLengthError, match="disagree"):
            encode.check_clip_lengths(n_frames, n_samples, max_seconds=max_seconds)


def test_missing_and_directory_inputs_say_so(tmp_path: Path, roi_clip) -> None:
    video, wav = roi_clip(tmp_path / "c.mp4", n_frames=20)
    missing = tmp_path / "nowav.wav"
    with pytest.raises(FileNotFoundError, match=r"^audio file not found: .*nowav\.wav"):
        encode.load_clip(str(video), str(missing))
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(IsADirectoryError, match=r"audio path is not a file.*dir\.wav"):
        encode.load_clip(str(video), str(tmp_path / "dir.wav"))
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(VideoReadError, match=r"video path is not a file.*dir\.mp4"):
        encode.load_clip(str(tmp_path / "dir.mp4"), str(wav))
    with pytest.raises(VideoReadError, match=r"video file not found.*gone\.mp4"):
        encode.load_clip(str(tmp_path / "gone.mp4"), str(missing))  # the video is named first
