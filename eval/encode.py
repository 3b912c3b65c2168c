"""Lip-only and speech-only encodings of clips, as SpeechForensics computes them.

For each clip (a mouth-ROI video and a 16 kHz mono wav), the first ``max_seconds`` of each
stream are turned into model inputs the way the reference does, by the clip-input contract
(:mod:`sf_fairseq.data.clip_inputs`, which also holds :class:`InputSettings`), as in training:

* video: grayscale frames -> /255 -> centre crop -> (x - mean) / std (values from the
  checkpoint's task config) -> ``[1, T_v, 88, 88]``;
* audio: int16 samples -> logfbank (26) -> stack ``stack_order`` frames -> per-frame layer norm
  -> ``[104, T_a]``.

:func:`load_clip` refuses, with a message naming what is wrong, a missing file or a directory,
a clip shorter than ``sf-prepare``'s minimum (:data:`MIN_FRAMES` frames, 0.48 s, in either
stream) and a clip whose video and audio durations, up to the ``max_seconds`` cap, differ by
more than ``max(0.5 s, 10 % of the longer)`` (a wav of another clip, a truncated stream, a
video not at 25 fps). ``sf-prepare`` writes wavs of exactly the video's duration.

The two streams are *not* aligned to a common length before encoding (the reference encodes
each at its own length; :mod:`.score` resamples afterwards). Each stream is encoded alone with
``extract_finetune`` (the other stream ``None``, i.e. zeros after its front end), for a batch of
clips at a time (zero-padded, with a padding mask), on CPU or GPU, optionally under bf16/fp16
autocast; features come from ``output_layer`` (None = final output after the last LayerNorm).
A stream that recurs (the same video in a real clip and its dubbed copy) is encoded once and its
features reused (:mod:`.feature_cache`).
In bf16/fp16 the weights of the linear and convolution layers are stored in that precision
once (:func:`store_matmul_weights_in`), so autocast does not cast them again on every call.

Precision ``auto`` (:func:`resolve_precision`) is bf16 only where the device runs it natively
(a GPU with bf16 units; a CPU with AVX512_BF16 or AMX) and float32 elsewhere: on an AVX2 CPU,
bf16 is emulated and LARGE's scoring passes were measured 7x slower than in float32.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sf_fairseq.data.clip_inputs import (FPS, SAMPLE_RATE, InputSettings, clip_inputs, pad_batch, padding_mask,
                                         read_clip)
from sf_fairseq.data.video import VideoReadError
from sf_fairseq.preprocess.prepare_engine import PrepareOptions

from .feature_cache import DEFAULT_MAX_BYTES, FeatureCache, content_key

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_CHOICES = ("auto", *PRECISIONS)
# Shortest clip scored: the shortest one ``sf-prepare`` keeps (``--min-frames``, 12 = 0.48 s).
MIN_FRAMES = PrepareOptions.min_frames
# Video and audio durations (as scored) may differ by at most the larger of these; beyond it
# the resampling of the lips onto the speech frames would compare unrelated instants.
LENGTH_TOLERANCE_S = 0.5
LENGTH_TOLERANCE_FRACTION = 0.10


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: AVX512_BF16 or AMX tiles (x86).

    ``torch.backends.cpu.get_cpu_capability()`` only reports the vector width ("AVX2",
    "AVX512", ...), and AVX-512 CPUs without the BF16 extension emulate it, so the
    instruction-set queries of ``torch.cpu`` decide.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cpu_capability() -> str:
    """The CPU's vector capability as torch sees it, with its bf16 extensions, e.g.
    ``"AVX2"`` or ``"AVX512 + AVX512_BF16 + AMX"`` (for benchmark figures and logs)."""
    extensions = [name for name, check in (("AVX512_BF16", "_is_avx512_bf16_supported"),
                                           ("AMX", "_is_amx_tile_supported"))
                  if getattr(torch.cpu, check, lambda: False)()]
    return " + ".join([torch.backends.cpu.get_cpu_capability(), *extensions])


def cpu_model_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 natively (a CUDA GPU of compute capability 8.0 or more, or a
    CPU with :func:`cpu_native_bf16`); emulated bf16 does not count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and cpu_native_bf16()


@functools.cache
def _warn_emulated_bf16() -> None:
    logger.warning(
        "bf16 requested on a CPU without native bf16 (%s): emulated bf16 is ~7x slower here; "
        "use --precision fp32 or auto", cpu_capability(),
    )


def resolve_precision(requested: str, device: torch.device | str) -> str:
    """The precision to run on ``device``: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is bf16 where ``device`` runs it natively (:func:`native_bf16`), else fp32. An
    explicit precision is kept, with a warning (once per process) for bf16 on a CPU that
    only emulates it. Records and settings fingerprints carry the resolved value.
    """
    if requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {list(PRECISION_CHOICES)}, got {requested!r}")
    device = torch.device(device)
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if requested == "bf16" and device.type == "cpu" and not cpu_native_bf16():
        _warn_emulated_bf16()
    return requested


class ClipLengthError(ValueError):
    """A clip too short to score, or whose video and audio durations disagree."""


@dataclass
class ClipInputs:
    """Model inputs of one clip: ``video`` float32 ``[T_v, H, W]``, ``audio`` float32
    ``[T_a, F]`` (``F = 26 * stack_order``)."""

    video: np.ndarray
    audio: np.ndarray


def _check_is_file(path: str, what: str, error: type[OSError] | None = None) -> None:
    """A missing file and a directory get messages that say which (not the decoder's), raised
    as ``error`` when given, else as ``FileNotFoundError`` / ``IsADirectoryError``."""
    if os.path.isdir(path):
        raise (error or IsADirectoryError)(f"{what} path is not a file (a directory): {path!r}")
    if not os.path.exists(path):
        raise (error or FileNotFoundError)(f"{what} file not found: {path!r}")


def check_clip_lengths(n_frames: int, n_samples: int, fps: float = FPS, max_seconds: float | None = None) -> None:
    """Refuse a clip ``sf-prepare`` would call too short, or whose streams disagree in duration.

    Args:
        n_frames: video frames of the whole clip.
        n_samples: audio samples (16 kHz) of the whole clip.
        fps: the video's frame rate (ROI videos are 25 fps).
        max_seconds: the scoring cap; durations are compared on the part that is scored.

    Raises:
        ClipLengthError: either stream is shorter than :data:`MIN_FRAMES` frames, or the two
            durations (after the cap) differ by more than ``max(LENGTH_TOLERANCE_S,
            LENGTH_TOLERANCE_FRACTION * longer)``.
    """
    video_s, audio_s = n_frames / fps, n_samples / SAMPLE_RATE
    min_s = MIN_FRAMES / fps
    if n_frames < MIN_FRAMES or audio_s < min_s:
        raise ClipLengthError(
            f"clip too short to score: video {n_frames} frames ({video_s:.2f} s), audio "
            f"{n_samples} samples ({audio_s:.2f} s); both need at least {MIN_FRAMES} frames "
            f"({min_s:.2f} s), as sf-prepare requires"
        )
    scored_v, scored_a = (video_s, audio_s) if max_seconds is None else (
        min(video_s, max_seconds), min(audio_s, max_seconds))
    tolerance = max(LENGTH_TOLERANCE_S, LENGTH_TOLERANCE_FRACTION * max(scored_v, scored_a))
    if abs(scored_v - scored_a) > tolerance:
        capped = "" if max_seconds is None else f" (within the first {max_seconds:g} s)"
        raise ClipLengthError(
            f"video and audio durations disagree{capped}: video {scored_v:.2f} s ({n_frames} frames "
            f"at {fps:g} fps), audio {scored_a:.2f} s; at most {tolerance:.2f} s apart is accepted "
            "(is the wav the one of this video, and the video at 25 fps?)"
        )


def load_clip(
    video_path: str,
    audio_path: str,
    settings: InputSettings = InputSettings(),
    max_seconds: float | None = 50.0,
    fps: float = FPS,
) -> ClipInputs:
    """Read and transform one clip, keeping the first ``max_seconds`` of each stream.

    Raises:
        OSError: a file is missing, a directory or unreadable (``VideoReadError`` for the video,
            ``FileNotFoundError`` for a missing wav).
        ValueError: the wav is not 16 kHz mono; :class:`ClipLengthError` when the clip is too
            short or its streams disagree in duration (:func:`check_clip_lengths`).
    """
    _check_is_file(video_path, "video", VideoReadError)
    _check_is_file(audio_path, "audio")
    frames, samples = read_clip(video_path, audio_path)
    check_clip_lengths(frames.shape[0], samples.shape[0], fps, max_seconds)
    if max_seconds is not None:
        frames = frames[: int(round(fps * max_seconds))]
        samples = samples[: int(round(SAMPLE_RATE * max_seconds))]
    if samples.shape[0] < 400:  # one 25 ms logfbank window (a --max-seconds below 0.025 s)
        raise ValueError(f"audio file {audio_path!r} is too short ({samples.shape[0]} samples)")
    # Each stream at its own length: the scorer resamples the lips onto the speech afterwards.
    video, audio = clip_inputs(frames, samples, settings, align=False)
    return ClipInputs(video=video, audio=audio)


MATMUL_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def store_matmul_weights_in(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Store the parameters of ``model``'s linear and convolution layers in ``dtype``, in place.

    Autocast runs these layers in ``dtype`` anyway but casts their float32 weights on every
    call: a third of LARGE's bf16 scoring time on CPU. Stored in ``dtype`` the results are the
    same and the casts are gone. Normalisation layers and other parameters stay float32. The
    model is then meant for use under autocast to ``dtype``.
    """
    for module in model.modules():
        if isinstance(module, MATMUL_LAYERS):
            module.to(dtype)
    return model


class StreamEncoder:
    """Encodes batches of clips stream by stream with a model's ``extract_finetune``.

    Args:
        model: a module with AV-HuBERT's ``extract_finetune(source, padding_mask,
            output_layer) -> (features [B, T, D], padding_mask)``; it is put in eval mode and
            moved to ``device``.
        device: where to run.
        output_layer: transformer block whose output is used (None = final output).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (autocast; features are returned
            in float32); ``auto`` is resolved for ``device`` (:func:`resolve_precision`) and
            :attr:`precision` holds the resolved one. For ``bf16``/``fp16`` the model's linear
            and convolution weights are converted to that precision in place
            (:func:`store_matmul_weights_in`): do not run the same model object in float32
            afterwards.
        joint_streams: run both streams through the transformer as one batch
            (``model.extract_finetune_streams``, same features); None = where measured faster:
            on CPU, with a model that has that method. On a GPU the batches are large already
            and two calls keep each call's memory as :class:`~.pipeline.BatchLimits` sized it.
        cache_bytes: size of :attr:`cache`, the features of recently encoded streams that
            :meth:`encode` reuses for a stream it meets again (0: reuse only within a batch).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device | str = "cpu",
        output_layer: int | None = None,
        precision: str = "fp32",
        joint_streams: bool | None = None,
        cache_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.device = torch.device(device)
        self.cache = FeatureCache(cache_bytes)
        precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        if PRECISIONS[precision] is not None:
            store_matmul_weights_in(self.model, PRECISIONS[precision])
        self.output_layer = output_layer
        self.precision = precision
        has_joint = hasattr(self.model, "extract_finetune_streams")
        if joint_streams and not has_joint:
            raise ValueError(f"{type(self.model).__name__} has no extract_finetune_streams for joint_streams")
        self.joint_streams = has_joint and self.device.type == "cpu" if joint_streams is None else joint_streams

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.inference_mode()
    def encode_source(self, source: dict[str, torch.Tensor | None], lengths: torch.Tensor) -> torch.Tensor:
        """``extract_finetune`` on a prepared padded ``source`` (one stream ``None``) with
        ``lengths [B]`` valid frames per clip -> float32 features ``[B, T_max, D]``."""
        t = int(lengths.max())
        mask = padding_mask(lengths.to(self.device), t)
        with self._autocast():
            feats, _ = self.model.extract_finetune(
                source=source, padding_mask=mask, output_layer=self.output_layer
            )
        if feats.shape[:2] != (lengths.shape[0], t):
            raise RuntimeError(
                f"encoder returned features of shape {tuple(feats.shape)} for {lengths.shape[0]} "
                f"clips of up to {t} frames (expected one feature row per input frame)"
            )
        return feats.float()

    def encode_video(self, videos: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Lip features: ``[T_i, H, W]`` arrays -> ``([B, T_max, D], lengths [B])``."""
        batch, lengths = pad_batch(videos)
        source = {"video": batch.unsqueeze(1).to(self.device), "audio": None}  # [B, 1, T, H, W]
        return self.encode_source(source, lengths), lengths

    def encode_audio(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech features: ``[T_i, F]`` arrays -> ``([B, T_max, D], lengths [B])``."""
        batch, lengths = pad_batch(audios)
        source = {"video": None, "audio": batch.transpose(1, 2).to(self.device)}  # [B, F, T]
        return self.encode_source(source, lengths), lengths

    def encode(
        self, clips: Sequence[ClipInputs]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both streams of a batch of clips, each at its own length.

        Each distinct stream is encoded once: one that recurs in the batch, or that :attr:`cache`
        holds from an earlier batch, reuses those features.

        Returns:
            ``(video_feats [B, Tv_max, D], video_lengths [B], audio_feats [B, Ta_max, D],
            audio_lengths [B])``; features on ``device`` (zero at padded frames), lengths on CPU.
        """
        video_keys = [content_key("video", c.video) for c in clips]
        audio_keys = [content_key("audio", c.audio) for c in clips]
        features: dict[bytes, torch.Tensor] = {}
        new_videos = self._uncached(video_keys, [c.video for c in clips], features)
        new_audios = self._uncached(audio_keys, [c.audio for c in clips], features)
        if new_videos or new_audios:
            encoded = self._encode_streams(list(new_videos.values()), list(new_audios.values()))
            for new, (feats, lengths) in zip((new_videos, new_audios), encoded):
                for row, key in enumerate(new):
                    features[key] = feats[row, : int(lengths[row])].clone()  # not a view of the batch
                    self.cache.put(key, features[key])
        vlen = torch.tensor([len(c.video) for c in clips], dtype=torch.long)
        alen = torch.tensor([len(c.audio) for c in clips], dtype=torch.long)
        video = self._stack([features[k] for k in video_keys])
        return video, vlen, self._stack([features[k] for k in audio_keys]), alen

    def _uncached(
        self, keys: list[bytes], arrays: list[np.ndarray], features: dict[bytes, torch.Tensor]
    ) -> dict[bytes, np.ndarray]:
        """The arrays to encode (one per key not in :attr:`cache`); cached ones go to ``features``."""
        new: dict[bytes, np.ndarray] = {}
        for key, array in zip(keys, arrays):
            if key in features or key in new:
                continue
            cached = self.cache.get(key)
            if cached is None:
                new[key] = array
            else:
                features[key] = cached
        return new

    def _encode_streams(
        self, videos: list[np.ndarray], audios: list[np.ndarray]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``(features, lengths)`` of each stream's arrays (either list may be empty)."""
        empty = (torch.empty(0), torch.empty(0, dtype=torch.long))
        if videos and audios:
            video, vlen = pad_batch(videos)
            audio, alen = pad_batch(audios)
            v, a = self.encode_padded(video.unsqueeze(1).to(self.device), vlen,
                                      audio.transpose(1, 2).to(self.device), alen)
            return (v, vlen), (a, alen)
        return (self.encode_video(videos) if videos else empty), (self.encode_audio(audios) if audios else empty)

    def _stack(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """``[T_i, D]`` features -> ``[B, T_max, D]``, zero-padded."""
        out = rows[0].new_zeros((len(rows), max(len(r) for r in rows), rows[0].shape[-1]))
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    def encode_padded(
        self, video: torch.Tensor, video_lengths: torch.Tensor, audio: torch.Tensor, audio_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both streams of padded batches on ``device``: video ``[Bv, 1, Tv, H, W]`` and audio
        ``[Ba, F, Ta]`` with their valid frames ``[Bv]``, ``[Ba]`` -> float32 features
        ``([Bv, Tv, D], [Ba, Ta, D])``, jointly or in two passes as :attr:`joint_streams` says."""
        if not self.joint_streams:
            return (self.encode_source({"video": video, "audio": None}, video_lengths),
                    self.encode_source({"video": None, "audio": audio}, audio_lengths))
        video_mask = padding_mask(video_lengths.to(self.device), video.size(2))
        audio_mask = padding_mask(audio_lengths.to(self.device), audio.size(2))
        with torch.inference_mode(), self._autocast():
            v, a = self.model.extract_finetune_streams(
                video, video_mask, audio, audio_mask, output_layer=self.output_layer
            )
        return v.float(), a.float()
