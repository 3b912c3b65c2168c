"""Iteration-1 clustering features: 39-d MFCC (13 cepstra + Δ + ΔΔ) at 100 Hz.

Kaldi-compatible, computed as the reference's ``dump_mfcc_feature.py`` does: the wav is read
with soundfile as floats in [-1, 1] (multi-channel files are averaged to mono),
``torchaudio.compliance.kaldi.mfcc(use_energy=False)`` with Kaldi's defaults (25 ms window,
10 ms hop, ``snip_edges`` so ``T = 1 + (n - 400) // 160`` frames at 16 kHz, no dither), then
``torchaudio.functional.compute_deltas`` twice. Labels from these features are at 100 Hz.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio

from sf_fairseq.data.manifest import Manifest, ManifestItem
from sf_fairseq.data.rates import SAMPLE_RATE

logger = logging.getLogger(__name__)

MFCC_RATE = 100
MFCC_DIM = 39


def mfcc_features(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MFCC + Δ + ΔΔ of a mono waveform.

    Args:
        waveform: ``[n_samples]`` floats in [-1, 1].
        sample_rate: samples per second.

    Returns:
        float32 ``[T, 39]`` at 100 frames per second (``T = 0`` for clips under one 25 ms window).
    """
    if waveform.ndim != 1:
        raise ValueError(f"expected a mono waveform [n_samples], got shape {waveform.shape}")
    window = int(sample_rate * 0.025)
    if len(waveform) < window:
        return np.zeros((0, MFCC_DIM), dtype=np.float32)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(waveform)).float().view(1, -1)
        mfcc = torchaudio.compliance.kaldi.mfcc(
            waveform=x, sample_frequency=sample_rate, use_energy=False
        )  # [T, 13]
        mfcc = mfcc.transpose(0, 1)  # [13, T]: compute_deltas works along the last dim
        delta = torchaudio.functional.compute_deltas(mfcc)
        delta2 = torchaudio.functional.compute_deltas(delta)
        return torch.cat([mfcc, delta, delta2], dim=0).transpose(0, 1).contiguous().numpy()


def read_mono_wav(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a wav as float64 ``[n_samples]`` in [-1, 1]; channels are averaged.

    Raises:
        ValueError: naming the file, if it is unreadable or not at ``sample_rate``.
    """
    try:
        wav, sr = sf.read(path, dtype="float64", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"{path}: cannot read audio ({err})") from err
    if sr != sample_rate:
        raise ValueError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
    return wav.mean(axis=-1) if wav.ndim == 2 else wav


class MfccFeatureReader:
    """Features of a manifest item from its audio column (the video is not used)."""

    feature_rate = MFCC_RATE

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate

    def iter_features(self, manifest: Manifest, items: Sequence[ManifestItem]) -> Iterator[np.ndarray]:
        """Features of ``items`` in order, float32 ``[T_i, 39]`` each."""
        for item in items:
            yield self.item_features(manifest, item)

    def item_features(self, manifest: Manifest, item: ManifestItem) -> np.ndarray:
        """Returns float32 ``[T, 39]`` for ``item``."""
        path = manifest.resolve(item.audio)
        wav = read_mono_wav(path, self.sample_rate)
        # The reference warns rather than fails on a manifest count that is off by > 10 ms.
        if abs(len(wav) - item.n_audio_samples) > self.sample_rate // 100:
            logger.warning(
                "%s: %d samples read, manifest says %d", path, len(wav), item.n_audio_samples
            )
        return mfcc_features(wav, self.sample_rate)
