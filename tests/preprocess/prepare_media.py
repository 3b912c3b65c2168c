"""Synthetic test clips with a real face in them (scikit-image's astronaut photo, public
domain), encoded with PyAV. Imported by the preprocess tests (pytest puts this folder on
sys.path)."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data


# Test clips are tiny: encode them as fast as the codecs allow.
FAST_ENCODING = {
    "libx264": {"preset": "ultrafast"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
}


@lru_cache(maxsize=8)
def face_patch(height: int = 150) -> np.ndarray:
    """BGR uint8 crop of the astronaut's head and shoulders, ``height`` pixels tall."""
    rgb = data.astronaut()[10:290, 90:350]
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    width = round(bgr.shape[1] * height / bgr.shape[0])
    return cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)


def frame_at(
    t: float, size: tuple[int, int], faces: int, noise_seed: int | None = None,
    face_height: int = 150,
) -> np.ndarray:
    """The canvas at time ``t`` s: ``faces`` astronauts side by side drifting a few pixels,
    or random noise when ``faces == 0``."""
    width, height = size
    if faces == 0:
        rng = np.random.default_rng(noise_seed if noise_seed is not None else int(t * 1000))
        blocks = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        return np.ascontiguousarray(blocks.repeat(8, 0).repeat(8, 1)[:height, :width])
    canvas = np.full((height, width, 3), 90, np.uint8)
    patch = face_patch(min(height - 20, face_height))
    ph, pw = patch.shape[:2]
    slot = width // faces
    for k in range(faces):
        dx = int(round(4 * np.sin(2 * np.pi * 0.7 * t + k)))
        dy = int(round(3 * np.cos(2 * np.pi * 0.5 * t)))
        x = k * slot + (slot - pw) // 2 + dx
        y = (height - ph) // 2 + dy
        canvas[y:y + ph, x:x + pw] = patch
    return canvas


def make_clip(
    path: Path,
    seconds: float = 2.0,
    fps: float = 25,
    size: tuple[int, int] = (256, 192),
    faces: int = 1,
    audio_rate: int | None = 48000,
    audio_channels: int = 2,
    silent: bool = False,
    frame_times: list[float] | None = None,
    audio_start: float = 0.0,
    beep_at: float | None = None,
    codec: str = "libx264",
    face_height: int = 150,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Encode a clip. ``frame_times`` (seconds) makes a variable-frame-rate clip; otherwise
    frames come every 1/``fps`` s. Audio: a quiet 220 Hz tone (zeros when ``silent``) with a
    loud 1 kHz beep of 0.1 s at ``beep_at``, starting ``audio_start`` s after the video.
    ``rotation`` (a multiple of 90) stores the ``size`` canvas turned by ``-rotation`` degrees
    with a display matrix that turns it back by ``rotation`` degrees counter-clockwise, as
    phones store portrait video. ``faststart`` puts the mp4 index before the media data (as
    streaming sites serve mp4), so a file cut short still opens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if frame_times is None:
        frame_times = [i / fps for i in range(max(1, round(seconds * fps)))]
    turns = rotation // 90
    stored_size = (size[1], size[0]) if turns % 2 else size
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height, video.pix_fmt = stored_size[0], stored_size[1], "yuv420p"
        video.codec_context.time_base = video.time_base = Fraction(1, 1000)
        video.options = FAST_ENCODING.get(codec, {})
        if rotation:
            video.set_display_rotation(rotation)  # written as the mp4/mov tkhd matrix
        audio = None
        if audio_rate:
            audio = container.add_stream("aac", rate=audio_rate)
            audio.layout = "stereo" if audio_channels == 2 else "mono"
        for t in frame_times:
            canvas = frame_at(t, size, faces, face_height=face_height)
            stored = np.ascontiguousarray(np.rot90(canvas, -turns))
            frame = av.VideoFrame.from_ndarray(stored, format="bgr24")
            frame.pts = round(t * 1000)
            frame.time_base = Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None:
            duration = frame_times[-1] + (frame_times[1] - frame_times[0] if len(frame_times) > 1 else 1 / fps)
            n = int(round((duration - audio_start) * audio_rate))
            t = np.arange(n) / audio_rate + audio_start
            signal = 0.0 if silent else 0.05 * np.sin(2 * np.pi * 220 * t)
            signal = np.broadcast_to(signal, t.shape).copy()
            if beep_at is not None and not silent:
                on = (t >= beep_at) & (t < beep_at + 0.1)
                signal[on] = 0.8 * np.sin(2 * np.pi * 1000 * t[on])
            samples = np.repeat(signal[None].astype(np.float32), audio_channels, axis=0)
            start = round(audio_start * audio_rate)
            for offset in range(0, n, 1024):
                chunk = np.ascontiguousarray(samples[:, offset:offset + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=audio.layout.name)
                frame.sample_rate = audio_rate
                frame.pts = start + offset
                frame.time_base = Fraction(1, audio_rate)
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
    return path
