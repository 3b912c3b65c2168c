"""One synthetic clip: what it shows and says, rendering to arrays, encoding to mp4.

A :class:`ClipPlan` is everything needed to render a clip deterministically: the face
augmentation, the head motion, the mouth shape per frame, the blur of the mouth per frame and
the 16 kHz audio. Real clips come from :func:`plan_real`; fakes (:mod:`.fakes`) are plans
derived from a real plan. A plan's tracks are sampled at 25 fps; :func:`render_frames` yields
the BGR frames at 25 fps or, as a camera at another rate would film the same motion, at 24 or
30 fps (:func:`tracks_at`); :func:`write_mp4` encodes H.264 (libx264, yuv420p) + AAC (16 kHz
mono) with PyAV into a temporary file renamed into place.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import av
import numpy as np

from sf_fairseq.data.rates import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from sf_fairseq.resume import atomic_path

from ..h264 import libx264_options
from . import grid
from .faces import Augmentation, augment
from .render import FaceRenderer, HeadMotion
from .speech import Utterance, make_sentence, random_voice, speak
from .visemes import MouthTrack, mouth_track


@dataclass
class ClipPlan:
    """A clip to render.

    Attributes:
        size: (width, height) of the video.
        augmentation: the face photo and its augmentation.
        head: head motion per frame.
        mouth: mouth shape per frame (``len(mouth) == n_frames``).
        blur: Gaussian sigma (px) of mouth smearing per frame ``[T]`` (0 = sharp).
        audio: int16 samples ``[T × 640]`` at 16 kHz.
        utterance: the speech whose audio this is (None if no single one).
        lead: where the utterance starts in the clip (s).
        meta: JSON-ready description (category, fake parameters, ...).
    """

    size: tuple[int, int]
    augmentation: Augmentation
    head: HeadMotion
    mouth: MouthTrack
    blur: np.ndarray
    audio: np.ndarray
    utterance: Utterance | None
    lead: float
    meta: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.mouth)

    def with_changes(self, **changes) -> "ClipPlan":
        return replace(self, **changes)


def place_audio(utterance_audio: np.ndarray, lead: float, n_frames: int) -> np.ndarray:
    """The utterance starting ``lead`` s into a silent track of exactly ``n_frames`` frames."""
    out = np.zeros(n_frames * SAMPLES_PER_FRAME, np.int16)
    start = int(round(lead * SAMPLE_RATE))
    piece = utterance_audio[: max(0, len(out) - start)]
    out[start : start + len(piece)] = piece
    return out


# Sentence grammars: "free" (template sentences, :func:`.speech.make_sentence`) or "grid" (the
# closed-vocabulary sentences of :mod:`.grid`).
GRAMMARS = ("free", "grid")


def new_utterance(rng: np.random.Generator, max_words: int = 16, grammar: str = "free") -> Utterance:
    """A random sentence of ``grammar`` spoken by a random voice (seeded). ``max_words`` bounds
    free sentences; GRID sentences always have six words. A GRID utterance's ``text`` is the
    written sentence (letters as letters), whatever espeak-ng was given to say it."""
    if grammar == "free":
        return speak(make_sentence(rng, max_words=max_words), random_voice(rng))
    if grammar == "grid":
        sentence = grid.make_sentence(rng)
        return replace(speak(grid.spoken_form(sentence), random_voice(rng)), text=sentence)
    raise ValueError(f"unknown grammar {grammar!r}; choose from {GRAMMARS}")


def plan_real(rng: np.random.Generator, size: tuple[int, int], utterance: Utterance | None = None,
              sources: tuple[str, ...] | None = None) -> ClipPlan:
    """A real clip: the mouth follows the utterance it says (a new random one by default)."""
    utterance = utterance or new_utterance(rng)
    augmentation = Augmentation.random(rng, sources) if sources else Augmentation.random(rng)
    lead = float(rng.uniform(0.2, 0.5))
    tail = float(rng.uniform(0.2, 0.5))
    n_frames = int(math.ceil((lead + utterance.duration + tail) * FPS))
    return ClipPlan(
        size=size,
        augmentation=augmentation,
        head=HeadMotion.random(rng, n_frames),
        mouth=mouth_track(utterance.phonemes, n_frames, offset=lead),
        blur=np.zeros(n_frames),
        audio=place_audio(utterance.audio, lead, n_frames),
        utterance=utterance,
        lead=lead,
        meta={"category": "real", "label": 1},
    )


def frames_at(n_frames: int, fps: int) -> int:
    """Frames of a clip of ``n_frames`` 25 fps frames filmed at ``fps``: enough to last as long
    (``ceil(n_frames * fps / 25)``), so the clip reads back at 25 fps with every frame."""
    return -(-n_frames * fps // FPS)


def tracks_at(plan: ClipPlan, fps: int) -> tuple[MouthTrack, HeadMotion, np.ndarray]:
    """The plan's mouth, head motion and blur at ``fps``: frame ``n`` holds the instant
    ``n / fps``, linearly interpolated between the two 25 fps frames around it (held after the
    last one). At 25 fps, the plan's own tracks."""
    if fps == FPS:
        return plan.mouth, plan.head, plan.blur
    x = np.arange(frames_at(plan.n_frames, fps)) * FPS / fps  # instants in 25 fps frames
    frames = np.arange(plan.n_frames)

    def at(values: np.ndarray) -> np.ndarray:
        return np.interp(x, frames, values)

    head = plan.head
    return (MouthTrack(at(plan.mouth.open), at(plan.mouth.width)),
            HeadMotion(at(head.angle), np.stack([at(head.shift[:, 0]), at(head.shift[:, 1])], axis=1), at(head.scale)),
            at(plan.blur))


def render_frames(plan: ClipPlan, renderer: FaceRenderer | None = None, fps: int = FPS) -> Iterator[np.ndarray]:
    """The clip's frames ``[H, W, 3]`` uint8 BGR at ``fps`` (:func:`tracks_at`): one per plan
    frame at 25 fps; at another rate, the motion rendered at that rate's instants, not 25 fps
    frames repeated or dropped."""
    if renderer is None:
        image, landmarks = augment(plan.augmentation, plan.size)
        renderer = FaceRenderer(image, landmarks)
    mouth, head, blur = tracks_at(plan, fps)
    for t in range(len(mouth)):
        yield renderer.render(float(mouth.open[t]), float(mouth.width[t]), head, t, blur=float(blur[t]))


class ArrayHasher:
    """SHA-256 of the frames and audio as rendered (before lossy encoding)."""

    def __init__(self) -> None:
        self.frames = hashlib.sha256()

    def watch(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            self.frames.update(np.ascontiguousarray(frame).tobytes())
            yield frame

    @staticmethod
    def audio(samples: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(samples, np.int16).tobytes()).hexdigest()


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], audio: np.ndarray,
              size: tuple[int, int], crf: int = 20, fps: int = FPS) -> int:
    """Encode frames (BGR, one per stored frame at ``fps``: :func:`render_frames` at that rate)
    with libx264 and ``audio`` (int16, 16 kHz mono) with AAC.

    Written to a temporary file first and renamed, so ``path`` exists only complete. One
    encoder thread (deterministic output; parallelism is across clips). Returns the number of
    frames written.
    """
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=fps)
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
            video.options = libx264_options(crf, "veryfast", threads=1)
            sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            n = 0
            for n, frame in enumerate(frames, start=1):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
                vf.pts = n - 1
                container.mux(video.encode(vf))
            container.mux(video.encode(None))
            _mux_audio(container, sound, audio)
    return n


def write_mp4_with_video_of(path: str | os.PathLike, video_from: str | os.PathLike, audio: np.ndarray) -> None:
    """An mp4 of the video stream of ``video_from`` (an mp4 of :func:`write_mp4`), copied packet
    by packet, and ``audio`` (int16, 16 kHz mono, AAC): the frames of ``video_from`` with other
    sound, as a fake that changes only the audio shows them, without rendering and encoding the
    frames again. Written to a temporary file first and renamed."""
    with atomic_path(path) as tmp:
        with av.open(str(video_from)) as source, av.open(str(tmp), mode="w", format="mp4") as container:
            source_video = source.streams.video[0]
            video = container.add_stream_from_template(source_video)
            sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            for packet in source.demux(source_video):
                if packet.dts is None:  # the demuxer's empty end-of-stream packet
                    continue
                packet.stream = video
                container.mux(packet)
            _mux_audio(container, sound, audio)


def _mux_audio(container, sound, audio: np.ndarray) -> None:
    """Encode ``audio`` (int16, 16 kHz mono) into the stream ``sound`` of ``container``."""
    samples = (audio.astype(np.float32) / 32768.0)[None]
    block = 1024
    for start in range(0, samples.shape[1], block):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + block]),
                                        format="fltp", layout="mono")
        af.sample_rate = SAMPLE_RATE
        af.pts = start
        container.mux(sound.encode(af))
    container.mux(sound.encode(None))
