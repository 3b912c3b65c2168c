"""Helpers for the robustness tests: small generated videos with audio, written with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest


def box_x(index: int, width: int) -> int:
    """Left edge of the moving white box in frame ``index`` (used to check frame order)."""
    return int(width / 4 + (width / 3) * (0.5 + 0.5 * np.sin(index / 2.0)))


def frame_image(index: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """RGB frame: colour gradients, a fixed texture and a white box moving along x."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = np.linspace(30, 220, width)[None]
    img[..., 1] = 90
    img[..., 2] = np.linspace(220, 30, height)[:, None]
    img = np.clip(img.astype(int) + rng.integers(-25, 25, img.shape), 0, 255).astype(np.uint8)
    x = box_x(index, width)
    img[height // 3 : height // 3 + height // 4, x : x + width // 8] = 255
    return img


def write_raw_video(
    path: Path, width: int = 128, height: int = 96, fps: int = 30, n_frames: int = 20,
    sample_rate: int = 44100, channels: int = 2, audio_start: float = 0.0, seed: int = 0,
) -> Path:
    """An H.264 + AAC mp4: ``n_frames`` frames at ``fps`` and a 440 Hz tone of the same
    duration (starting ``audio_start`` s after the first frame)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        video.options = {"crf": "12", "preset": "ultrafast"}
        layout = "stereo" if channels == 2 else "mono"
        audio = container.add_stream("aac", rate=sample_rate, layout=layout)
        audio.bit_rate = 128000
        for i in range(n_frames):
            texture_rng = np.random.default_rng(seed + 100)  # the same texture on every frame
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height, texture_rng), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        n = int(n_frames / fps * sample_rate)
        t = np.arange(n) / sample_rate
        tone = (6000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 300, n)).astype(np.int16)
        signal = np.ascontiguousarray(np.stack([tone] * channels))
        offset = int(round(audio_start * sample_rate))
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal[:, start : start + 1024]),
                                               format="s16p", layout=layout)
            frame.sample_rate, frame.pts = sample_rate, offset + start
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def decode_frames(path: Path) -> np.ndarray:
    """All frames as ``uint8 [T, H, W, 3]`` BGR."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="bgr24") for f in container.decode(video=0)])


@pytest.fixture
def raw_video(tmp_path):
    return write_raw_video(tmp_path / "src" / "clip.mp4")
