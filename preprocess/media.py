"""Media input/output with PyAV: timestamp-correct 25 fps frame streams, 16 kHz mono audio,
and the ROI video writer.

Frames are streamed (memory does not grow with the video's length). Any input frame rate,
constant or variable, is resampled to ``TARGET_FPS`` by timestamps: output frame ``k`` shows
the source frame nearest in time to ``t0 + k / 25`` where ``t0`` is the time of the first
decoded video frame. Audio is placed on the same clock (its first sample's timestamp relative
to ``t0``), resampled to 16 kHz mono int16 and padded or cut to exactly
``n_frames * SAMPLES_PER_FRAME`` samples, so the wav and the ROI video have the same duration.

Frames are turned upright as a player shows them: a display matrix (phones store portrait video
sideways with a 90° or 270° rotation in the container) is applied to every decoded frame.

Both streams also report where the container says they end, so that a truncated file (a partial
download whose index, at the front, still describes the whole video) can be told from a short
one: :func:`shortfall` compares the decoded end with the stated end.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import soundfile as sf

from sf_fairseq.data.rates import FPS as TARGET_FPS
from sf_fairseq.data.rates import SAMPLE_RATE

from .h264 import libx264_options

logger = logging.getLogger(__name__)

# Errors PyAV raises for files FFmpeg cannot demux or decode.
MediaError = (av.error.FFmpegError, OSError, UnicodeDecodeError)

# A stream is truncated when it decodes to less than its stated duration by more than the
# larger of these (encoder padding, edit lists and the last frame's duration differ by far less).
TRUNCATION_TOLERANCE_S = 0.5
TRUNCATION_TOLERANCE_FRACTION = 0.02

ROI_CRF = 20  # the reference's quality for the mouth ROI videos


class UnreadableMediaError(RuntimeError):
    """The file cannot be opened or holds no decodable video."""


@dataclass(frozen=True)
class VideoStreamInfo:
    """What a first pass over the video learns: the clock and the 25 fps frame count."""

    start_time: float  # seconds, time of the first decoded frame (t0)
    n_frames: int  # frames at TARGET_FPS
    source_fps: float  # average input rate (frames decoded / time spanned)
    width: int  # as displayed (after the rotation)
    height: int
    decode_error: str | None  # set when decoding stopped early (truncated or damaged file)
    end_time: float = 0.0  # seconds, where the decoded video ends (last frame + its duration)
    stated_end: float | None = None  # seconds, where the container says the video ends
    rotation: int = 0  # counter-clockwise degrees applied to show the frames upright
    rotation_stored: float = 0.0  # the rotation the file states (may not be a multiple of 90)


def stated_end(container, stream) -> float | None:
    """Where the container says ``stream`` ends, in seconds of the stream's clock, or None when
    it does not say. Sources, most direct first: the stream's duration, Matroska's per-track
    ``DURATION`` tag, the frame count at the stream's rate, and the container's duration when
    the file holds no other audio or video stream (it is the longest stream's)."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if stream.duration:
        return start + float(stream.duration * stream.time_base)
    tag = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", stream.metadata.get("DURATION", ""))
    if tag:
        hours, minutes, seconds = tag.groups()
        return start + 3600 * int(hours) + 60 * int(minutes) + float(seconds)
    rate = getattr(stream, "average_rate", None)
    if stream.frames and rate:
        return start + stream.frames / float(rate)
    if container.duration and len(container.streams.video) + len(container.streams.audio) == 1:
        container_start = (container.start_time or 0) / av.time_base
        return container_start + container.duration / av.time_base
    return None


def shortfall(decoded_end: float, stated: float | None, start: float) -> float | None:
    """Seconds missing at the end of a stream that decoded up to ``decoded_end`` but is stated to
    end at ``stated`` (it began at ``start``), when more than the tolerance (the larger of
    ``TRUNCATION_TOLERANCE_S`` and ``TRUNCATION_TOLERANCE_FRACTION`` of the stated duration);
    else None."""
    if stated is None:
        return None
    missing = stated - decoded_end
    allowed = max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * (stated - start))
    return missing if missing > allowed else None


def display_rotation(frame: av.VideoFrame, stream) -> float:
    """Counter-clockwise degrees by which ``frame`` must be turned to be shown upright: its
    display matrix (``VideoFrame.rotation``; PyAV attaches the container's matrix to every
    frame) or, where FFmpeg still exports it as a tag, the stream's ``rotate`` metadata (which
    counts clockwise)."""
    rotation = float(getattr(frame, "rotation", 0) or 0)
    if not rotation and stream.metadata.get("rotate"):
        rotation = -float(stream.metadata["rotate"])
    return rotation


def has_audio_stream(path: str | os.PathLike) -> bool:
    with av.open(str(path)) as container:
        return len(container.streams.audio) > 0


class FrameStream:
    """Iterate a video's frames resampled to 25 fps by timestamps.

    ``fmt`` is a PyAV pixel format name: ``"gray"`` yields ``uint8 [H, W]``, ``"bgr24"`` yields
    ``uint8 [H, W, 3]``. After the iteration ends, :attr:`info` describes the stream. A
    decoding error after the first frame ends the stream early (the frames decoded so far are
    kept and ``info.decode_error`` says why); an error before any frame raises
    :class:`UnreadableMediaError`.
    """

    def __init__(self, path: str | os.PathLike, fmt: str = "gray", max_frames: int | None = None):
        self.path = str(path)
        self.fmt = fmt
        self.max_frames = max_frames
        self.info: VideoStreamInfo | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            container = av.open(self.path)
        except MediaError as err:
            raise UnreadableMediaError(f"{self.path}: cannot open ({err})") from err
        with container:
            if not container.streams.video:
                raise UnreadableMediaError(f"{self.path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from self._resample(container, stream)

    def _decoded(self, container, stream) -> Iterator[tuple[av.VideoFrame, float]]:
        """Decoded frames with their time in seconds, strictly increasing."""
        last_t = -math.inf
        default_step = 1.0 / float(stream.average_rate or stream.guessed_rate or TARGET_FPS)
        self._error = None
        try:
            for frame in container.decode(stream):
                if frame.pts is not None:
                    t = frame.time
                else:
                    t = last_t + default_step if last_t > -math.inf else 0.0
                if t <= last_t:  # duplicate or out-of-order timestamp: skip
                    continue
                last_t = t
                yield frame, t
        except MediaError as err:
            self._error = f"decoding stopped at {max(last_t, 0.0):.2f} s: {err}"

    def _resample(self, container, stream) -> Iterator[np.ndarray]:
        prev: av.VideoFrame | None = None
        prev_t = t0 = 0.0
        prev_array: np.ndarray | None = None
        n_out = n_in = 0
        step = None
        width = height = 0
        stored_rotation, quarter_turns = 0.0, 0

        def array_of(frame: av.VideoFrame) -> np.ndarray:
            nonlocal prev_array
            if prev_array is None:
                prev_array = frame.to_ndarray(format=self.fmt)
                if quarter_turns:
                    prev_array = np.ascontiguousarray(np.rot90(prev_array, quarter_turns))
            return prev_array

        for frame, t in self._decoded(container, stream):
            if prev is None:
                t0 = t
                # One rotation for the whole stream (the container's matrix), so every frame
                # has the same shape.
                stored_rotation = display_rotation(frame, stream)
                quarter_turns = round(stored_rotation / 90) % 4
                width, height = frame.width, frame.height
                if quarter_turns % 2:
                    width, height = height, width
            else:
                step = t - prev_t
                # Every output time closer to prev than to this frame shows prev.
                boundary = 0.5 * (prev_t + t) - t0
                while n_out / TARGET_FPS < boundary:
                    if self.max_frames is not None and n_out >= self.max_frames:
                        break
                    yield array_of(prev)
                    n_out += 1
                prev_array = None
            prev, prev_t = frame, t
            n_in += 1
            if self.max_frames is not None and n_out >= self.max_frames:
                break
        if prev is None:
            reason = self._error or "no decodable video frames"
            raise UnreadableMediaError(f"{self.path}: {reason}")
        last_duration = None
        if prev.duration:
            last_duration = float(prev.duration * prev.time_base)
        if not last_duration:
            last_duration = step or 1.0 / float(stream.average_rate or TARGET_FPS)
        end = prev_t + last_duration - t0
        n_total = max(n_out, round(end * TARGET_FPS), 1)
        if self.max_frames is not None:
            n_total = min(n_total, self.max_frames)
        while n_out < n_total:
            yield array_of(prev)
            n_out += 1
        span = prev_t + last_duration - t0
        self.info = VideoStreamInfo(
            start_time=t0,
            n_frames=n_out,
            source_fps=n_in / span if span > 0 else float(TARGET_FPS),
            width=width,
            height=height,
            decode_error=self._error,
            end_time=prev_t + last_duration,
            stated_end=stated_end(container, stream),
            rotation=90 * (quarter_turns if quarter_turns <= 2 else quarter_turns - 4),
            rotation_stored=stored_rotation,
        )


@dataclass(frozen=True)
class AudioInfo:
    n_samples: int
    source_rate: int
    source_channels: int
    peak: int  # max |sample| of the written int16 signal (0 = silent)
    offset_samples: int  # samples padded (>0) or cut (<0) at the start to align with the video
    n_decoded: int  # samples that came from the source (the rest is padding)
    # Seconds (source clock) where the decoded audio ended, when the stream ran out before the
    # wav was full (None when decoding stopped because the wav was full).
    decoded_end: float | None = None
    stated_end: float | None = None  # seconds, where the container says the audio ends


def write_aligned_audio(
    path: str | os.PathLike,
    target: str | os.PathLike,
    start_time: float,
    n_samples: int,
) -> AudioInfo:
    """Decode the first audio stream of ``path`` to ``target``: 16 kHz mono int16 wav holding
    exactly ``n_samples`` samples, sample 0 at ``start_time`` seconds of the source clock (the
    first video frame). Streams to disk. Raises :class:`UnreadableMediaError` without an audio
    stream or decodable audio."""
    try:
        container = av.open(str(path))
    except MediaError as err:
        raise UnreadableMediaError(f"{path}: cannot open ({err})") from err
    with container, sf.SoundFile(
        str(target), "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16", format="WAV"
    ) as out:
        if not container.streams.audio:
            raise UnreadableMediaError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        rate, channels = stream.rate or 0, stream.channels or 0
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        written = decoded = 0
        skip = 0  # samples still to drop at the start (audio begins before the video)
        offset = None
        peak = 0
        decoded_end = None

        def put(samples: np.ndarray) -> None:
            nonlocal written, decoded, skip, peak
            if skip:
                cut = min(skip, len(samples))
                samples, skip = samples[cut:], skip - cut
            samples = samples[: n_samples - written]
            if len(samples):
                out.write(samples)
                written += len(samples)
                decoded += len(samples)
                peak = max(peak, int(np.abs(samples.astype(np.int32)).max()))

        def frames():
            try:
                for frame in container.decode(stream):
                    yield frame
            except MediaError as err:
                logger.warning("%s: audio decoding stopped early: %s", path, err)
            yield None  # flush the resampler

        for frame in frames():
            if frame is not None and offset is None:
                first = frame.time if frame.time is not None else start_time
                offset = round((first - start_time) * SAMPLE_RATE)
                if offset > 0:
                    put_silence = min(offset, n_samples)
                    out.write(np.zeros(put_silence, np.int16))
                    written += put_silence
                else:
                    skip = -offset
            if frame is not None and frame.time is not None and frame.sample_rate:
                decoded_end = frame.time + frame.samples / frame.sample_rate
            for resampled in resampler.resample(frame):
                put(resampled.to_ndarray().reshape(-1).astype(np.int16, copy=False))
            if written >= n_samples:
                decoded_end = None  # full: where the stream would have run out is unknown
                break
        if offset is None:
            raise UnreadableMediaError(f"{path}: no decodable audio")
        if written < n_samples:
            out.write(np.zeros(n_samples - written, np.int16))
        stated = stated_end(container, stream)
    return AudioInfo(n_samples, rate, channels, peak, offset, decoded, decoded_end, stated)


def roi_codec() -> str:
    """The encoder of the ROI videos: H.264 (libx264) when PyAV's FFmpeg has it, else MPEG-4
    Part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class RoiWriter:
    """Write ``uint8 [H, W, 3]`` BGR frames to an mp4 at 25 fps (codec: :func:`roi_codec`),
    readable by OpenCV. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, crf: int = ROI_CRF):
        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w", format="mp4")
        if roi_codec() == "libx264":
            stream = self._container.add_stream("libx264", rate=TARGET_FPS)
            # crf 20 as the reference; one thread: the frames are tiny and workers run in parallel.
            stream.options = libx264_options(crf, "veryfast", threads=1)
        else:
            stream = self._container.add_stream("mpeg4", rate=TARGET_FPS)
            stream.options = {"qscale": "3"}
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        self._stream = stream
        self.n_frames = 0

    def write(self, bgr: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts = self.n_frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.n_frames += 1

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "RoiWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._container.close()
