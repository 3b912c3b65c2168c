"""Media for the robustness tests: small generated videos with audio (PyAV), mouth-ROI clips."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


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


def write_roi_pair(video: Path, n_frames: int = 25, seed: int = 0, audio_seed: int | None = None) -> Path:
    """A 96x96 25 fps mouth-ROI-like mp4 (no audio; a disc opening with an envelope) and a
    16 kHz wav beside it whose loudness follows the envelope of ``audio_seed`` (default: the
    clip's own, a "real" pair; another seed makes a "fake" one). Returns the video path."""
    import soundfile as sf

    def envelope(s: int) -> np.ndarray:
        r = np.random.default_rng(s)
        return 0.5 + 0.5 * np.sin(np.arange(n_frames) * r.uniform(0.3, 0.9) + r.uniform(0, 6))

    video.parent.mkdir(parents=True, exist_ok=True)
    env = envelope(seed)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 96
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for i, e in enumerate(env):
            img = np.full((96, 96, 3), 60, np.uint8)
            yy, xx = np.mgrid[:96, :96]
            img[((xx - 48) / 30.0) ** 2 + ((yy - 56) / (4 + 20 * e)) ** 2 < 1] = (40, 40, 170)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    amp = np.repeat(envelope(seed if audio_seed is None else audio_seed), 640)
    t = np.arange(amp.size) / 16000
    noise = np.random.default_rng(seed).normal(0, 100, t.size)
    sf.write(video.with_suffix(".wav"), (8000 * amp * np.sin(2 * np.pi * 220 * t) + noise).astype(np.int16),
             16000, subtype="PCM_16")
    return video
