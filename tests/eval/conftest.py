"""Helpers for the eval tests: generated ROI clips and a stand-in encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch


def write_roi_clip(
    video_path: Path, n_frames: int = 50, seconds: float | None = None, seed: int = 0, size: int = 96
) -> tuple[Path, Path]:
    """A 25 fps ``size``x``size`` mp4 with a moving blob, and a 16 kHz mono wav beside it
    (``seconds`` long, default the video's duration). Returns ``(video, wav)``."""
    rng = np.random.default_rng(seed)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size, size))
    assert writer.isOpened()
    base = rng.integers(0, 255, size=(size, size), dtype=np.uint8)
    for i in range(n_frames):
        frame = base.copy()
        r = 10 + int(8 * np.sin(i / 3.0 + seed))
        cv2.circle(frame, (size // 2, size // 2), r, 255, -1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    seconds = n_frames / 25.0 if seconds is None else seconds
    wav = video_path.with_suffix(".wav")
    t = np.arange(int(seconds * 16000)) / 16000.0
    signal = 8000 * np.sin(2 * np.pi * (200 + 100 * seed) * t) + rng.normal(0, 500, t.shape)
    sf.write(wav, signal.astype(np.int16), 16000, subtype="PCM_16")
    return video_path, wav


class StandInEncoder(torch.nn.Module):
    """Has AV-HuBERT's ``extract_finetune`` signature; per-frame features, so a clip's features
    do not depend on the rest of its batch. Records the calls it gets."""

    def __init__(self, dim: int = 16, feat_dim: int = 104):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.video_proj = torch.nn.Parameter(torch.randn(4, dim, generator=gen))
        self.audio_proj = torch.nn.Parameter(torch.randn(feat_dim, dim, generator=gen))
        self.calls: list[dict] = []

    def extract_finetune(self, source, padding_mask=None, output_layer=None):
        video, audio = source["video"], source["audio"]
        assert (video is None) != (audio is None), "one stream at a time"
        self.calls.append(
            {"stream": "video" if audio is None else "audio", "mask": padding_mask, "layer": output_layer,
             "dtype": torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None}
        )
        if video is not None:  # [B, 1, T, H, W] -> quadrant means [B, T, 4]
            b, _, t, h, w = video.shape
            quads = video[:, 0].reshape(b, t, 2, h // 2, 2, w // 2).mean(dim=(3, 5)).reshape(b, t, 4)
            feats = quads @ self.video_proj
        else:  # [B, F, T]
            feats = audio.transpose(1, 2) @ self.audio_proj
        if output_layer is not None:
            feats = feats * (output_layer + 1)
        return feats, padding_mask


@pytest.fixture
def roi_clip() -> Callable[..., tuple[Path, Path]]:
    return write_roi_clip


@pytest.fixture
def stand_in() -> StandInEncoder:
    return StandInEncoder()


def write_envelope_clip(
    video_path: Path, envelope: np.ndarray, audio_delay_frames: int = 0, size: int = 96
) -> tuple[Path, Path]:
    """A ROI clip whose "mouth" (a bright disc) opens with ``envelope`` [T] in [0, 1] and whose
    wav is a 300 Hz tone with the same per-frame amplitude, delayed by ``audio_delay_frames``
    frames (40 ms each; silence first)."""
    video_path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size, size))
    for e in envelope:
        frame = np.full((size, size), 40, np.uint8)
        cv2.circle(frame, (size // 2, size // 2), int(4 + 30 * e), 220, -1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    amp = np.repeat(np.r_[np.zeros(audio_delay_frames), envelope][: len(envelope)], 640)
    t = np.arange(amp.size) / 16000.0
    rng = np.random.default_rng(0)
    signal = 12000 * amp * np.sin(2 * np.pi * 300 * t) + rng.normal(0, 30, t.shape)
    wav = video_path.with_suffix(".wav")
    sf.write(wav, signal.astype(np.int16), 16000, subtype="PCM_16")
    return video_path, wav


class EnvelopeEncoder(torch.nn.Module):
    """A stand-in whose two streams share a meaning: lip features are the mean brightness
    (mouth opening), speech features the mean log energy (loudness), each centred over the
    clip's valid frames, so cos(V_i, A_j) = +1 when both are above or both below their means.
    Use with ``InputSettings(normalize=False)`` (per-frame norm removes loudness)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def extract_finetune(self, source, padding_mask=None, output_layer=None):
        video, audio = source["video"], source["audio"]
        if video is not None:  # [B, 1, T, H, W]
            x = video[:, 0].mean(dim=(2, 3))
        else:  # [B, F, T]
            x = audio.mean(dim=1)
        valid = (~padding_mask).float() if padding_mask is not None else torch.ones_like(x)
        mean = (x * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True)
        return ((x - mean) * valid)[..., None], padding_mask


@pytest.fixture
def envelope_clip() -> Callable[..., tuple[Path, Path]]:
    return write_envelope_clip


@pytest.fixture
def envelope_encoder() -> EnvelopeEncoder:
    return EnvelopeEncoder()
