"""The clip-input contract: what one clip looks like to an AV-HuBERT encoder.

One clip is a grayscale mouth-ROI video at :data:`FPS` and a mono wav at :data:`SAMPLE_RATE`,
so one video frame spans :data:`SAMPLES_PER_FRAME` samples. Its model inputs are

* video: uint8 frames ``[T_v, H, W]`` → /255 → centre crop → ``(x - mean) / std`` →
  float32 ``[T_v, crop, crop]`` (:func:`video_inputs`);
* audio: int16-scale samples → 26 log filterbanks at 100 Hz → :data:`STACK_ORDER` frames
  stacked into one 25 Hz frame → zero-padded or trimmed at the end to the video's frame count
  (when aligned) → per-frame layer norm (when the task normalises) → float32 ``[T, 26 * k]``
  (:func:`audio_inputs`).

:class:`InputSettings` holds the settings a checkpoint was trained with (its task config).
:func:`clip_inputs` builds both streams of one decoded clip; the dataset (training and
validation), the scorer and transcriber (:mod:`sf_fairseq.eval.encode`) and the clustering
feature reader (:mod:`sf_fairseq.preprocess.features_model`) all build their inputs with these
functions, so scoring sees what training saw.

Alignment is the one deliberate difference between the users: training and clustering align the
audio to the video's frame count (as the reference's dataset and ``dump_hubert_feature.py``);
scoring and transcription encode each stream at its own length (as SpeechForensics does; the
scorer resamples afterwards) and only cap both at the first ``max_seconds``.

Batches of clips are zero-padded along time with a padding mask (:func:`pad_batch`,
:func:`padding_mask`); the dataset's collater pads (or crops) the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .audio_features import audio_features_from_wav, normalize_per_frame
from .audio_io import read_wav_checked
from .rates import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: F401 (re-exported: the contract's rates)
from .video import CROP_SIZE, MEAN, STD, VideoTransform, load_video_frames

STACK_ORDER = 4
"""100 Hz filterbank frames stacked into one 25 Hz audio feature frame (AV-HuBERT's default)."""


@dataclass(frozen=True)
class InputSettings:
    """Input transform settings, normally read from the checkpoint's task config."""

    crop_size: int = CROP_SIZE
    mean: float = MEAN
    std: float = STD
    stack_order: int = STACK_ORDER
    normalize: bool = True

    @classmethod
    def from_task_config(cls, task_cfg: Mapping[str, Any]) -> "InputSettings":
        """From a task config mapping (``image_crop_size``, ``image_mean``, ``image_std``,
        ``stack_order_audio``, ``normalize``); missing keys keep the defaults."""
        defaults = cls()
        return cls(
            crop_size=int(task_cfg.get("image_crop_size", defaults.crop_size)),
            mean=float(task_cfg.get("image_mean", defaults.mean)),
            std=float(task_cfg.get("image_std", defaults.std)),
            stack_order=int(task_cfg.get("stack_order_audio", defaults.stack_order)),
            normalize=bool(task_cfg.get("normalize", defaults.normalize)),
        )

    def eval_transform(self) -> VideoTransform:
        """The deterministic video transform of these settings (centre crop, normalise)."""
        return _eval_transform(self.crop_size, self.mean, self.std)


@functools.lru_cache(maxsize=8)
def _eval_transform(crop_size: int, mean: float, std: float) -> VideoTransform:
    # Deterministic, so one instance (and its lookup table) serves every clip and thread.
    return VideoTransform.eval(crop_size, mean, std)


def align_audio_to_video(audio: np.ndarray, n_video_frames: int) -> np.ndarray:
    """Zero-pad or trim ``audio`` ``[T_a, F]`` at the end to ``[n_video_frames, F]``."""
    diff = len(audio) - n_video_frames
    if diff < 0:
        return np.concatenate([audio, np.zeros((-diff, audio.shape[1]), dtype=audio.dtype)])
    return audio[:n_video_frames]


def video_inputs(
    frames: np.ndarray,
    settings: InputSettings,
    transform: VideoTransform | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Model input of grey frames uint8 ``[T, H, W]``: float32 ``[T, crop, crop]``.

    ``transform`` replaces the settings' deterministic one (the dataset's training transform,
    drawing from ``rng``).
    """
    transform = transform if transform is not None else settings.eval_transform()
    return np.asarray(transform(frames, rng), dtype=np.float32)


def audio_inputs(samples: np.ndarray, settings: InputSettings, n_frames: int | None = None) -> np.ndarray:
    """Model input of a waveform ``[n_samples]`` (int16 scale): float32 ``[T, 26 * stack_order]``.

    With ``n_frames`` the stacked features are zero-padded or trimmed at the end to that many
    frames before the per-frame norm (padded frames stay zero); else ``T`` follows the wav.
    """
    audio = audio_features_from_wav(samples, settings.stack_order, normalize=False)
    if n_frames is not None:
        audio = align_audio_to_video(audio, n_frames)
    if settings.normalize:
        audio = normalize_per_frame(audio)
    return np.asarray(audio, dtype=np.float32)


def clip_inputs(
    frames: np.ndarray, samples: np.ndarray, settings: InputSettings, align: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of one decoded clip: ``(video [T_v, crop, crop], audio [T, F])``, float32.

    Args:
        frames: grey frames uint8 ``[T_v, H, W]``.
        samples: the wav ``[n_samples]`` at :data:`SAMPLE_RATE`, int16 scale.
        settings: the checkpoint's input settings.
        align: pad or trim the audio to ``T_v`` frames (training, clustering); else it keeps
            its own length (scoring, transcription).
    """
    video = video_inputs(frames, settings)
    audio = audio_inputs(samples, settings, len(video) if align else None)
    return video, audio


def read_clip(video_path: str, audio_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one clip: ``(grey frames uint8 [T_v, H, W], samples [n_samples])``.

    Raises:
        OSError, ValueError: from the decoders, naming the file (unreadable video, wav not
            :data:`SAMPLE_RATE` mono).
    """
    return load_video_frames(video_path), read_wav_checked(audio_path, SAMPLE_RATE)


def pad_batch(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``[T_i, ...]`` arrays along time.

    Returns:
        ``(batch [B, T_max, ...] float32, lengths [B] int64)``.
    """
    lengths = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
    out = torch.zeros((len(arrays), int(lengths.max()), *arrays[0].shape[1:]), dtype=torch.float32)
    for row, arr in enumerate(arrays):  # one copy per clip
        out[row, : arr.shape[0]] = torch.from_numpy(arr)
    return out, lengths


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``[B, max_len]`` bool, True at padded frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]
