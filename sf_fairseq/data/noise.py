"""Additive-noise augmentation of int16 speech at a target SNR (AV-HuBERT's ``add_noise``).

``noise_num`` noise clips are drawn (with replacement) from a noise list, trimmed to the shortest
and averaged (floored, as the reference); the noise is tiled or cut to the speech length, scaled
so that ``20 log10(rms(speech) / rms(noise)) = snr`` and added. If the mix leaves the int16 range
it is scaled down as a whole so its peak just fits (no clipping).

The SNR spec is a string such as ``"0"`` (fixed) or ``"-5,5"`` / ``"(-5, 5)"`` (a range: integer
endpoints draw an integer uniformly, inclusive, as the reference; otherwise a real number).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .audio_io import read_wav
from .rates import SAMPLE_RATE

INT16_MAX = float(np.iinfo(np.int16).max)
INT16_MIN = float(np.iinfo(np.int16).min)


@dataclass(frozen=True)
class SnrSpec:
    """A fixed SNR (``low == high``) or a range ``[low, high]`` in dB."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        if self.low == self.high:
            return self.low
        if float(self.low).is_integer() and float(self.high).is_integer():
            return float(rng.integers(int(self.low), int(self.high) + 1))
        return float(rng.uniform(self.low, self.high))


def parse_snr(spec: str | float | int | Sequence[float]) -> SnrSpec:
    """Parse ``"0"``, ``"-5,5"``, ``"(-5, 5)"``, a number or a pair into an :class:`SnrSpec`."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return SnrSpec(float(spec), float(spec))
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.strip().strip("()[]").split(",")]
    else:
        parts = list(spec)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid SNR spec {spec!r}: expected a number or 'low,high'") from err
    if len(values) == 1:
        return SnrSpec(values[0], values[0])
    if len(values) != 2 or values[0] > values[1] or not all(np.isfinite(values)):
        raise ValueError(
            f"invalid SNR spec {spec!r}: expected a number or 'low,high' with low <= high"
        )
    return SnrSpec(values[0], values[1])


def read_noise_list(path: str | os.PathLike) -> list[str]:
    """Noise wav paths, one per line (first tab-separated field; blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        paths = [line.split("\t")[0].strip() for line in f]
    paths = [p for p in paths if p]
    if not paths:
        raise ValueError(f"noise list {os.fspath(path)!r} holds no path")
    return paths


def average_noises(noises: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of noise clips trimmed to the shortest, floored to int16 steps; float32 ``[n]``."""
    if len(noises) == 1:
        return np.asarray(noises[0], dtype=np.float32)
    n = min(len(x) for x in noises)
    stacked = np.stack([np.asarray(x[:n], dtype=np.float32) for x in noises])
    return np.floor(stacked.mean(axis=0))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` to int16 ``clean`` so that the speech-to-noise RMS ratio is ``snr_db``.

    Args:
        clean: int16 ``[n]``.
        noise: ``[m]`` on the int16 scale; tiled if ``m < n``, its first ``n`` samples used.

    Returns:
        int16 ``[n]``, rescaled as a whole if the mix would clip.
    """
    speech = np.asarray(clean, dtype=np.float32)
    noise = np.asarray(noise, dtype=np.float32)
    if noise.size == 0:
        raise ValueError("empty noise clip")
    if len(noise) < len(speech):
        noise = np.tile(noise, -(-len(speech) // len(noise)))
    noise = noise[: len(speech)]
    noise_rms = np.sqrt(np.mean(np.square(noise, dtype=np.float64)))
    if noise_rms == 0:  # silent noise adds nothing; still rounded and range-checked below
        mixed = speech
    else:
        speech_rms = np.sqrt(np.mean(np.square(speech, dtype=np.float64)))
        target_rms = speech_rms / 10.0 ** (snr_db / 20.0)
        mixed = speech + noise * np.float32(target_rms / noise_rms)
    peak, trough = float(mixed.max()), float(mixed.min())
    if peak > INT16_MAX or trough < INT16_MIN:
        scale = INT16_MAX / peak if peak >= abs(trough) else INT16_MIN / trough
        mixed = mixed * np.float32(scale)
    return np.clip(np.rint(mixed), INT16_MIN, INT16_MAX).astype(np.int16)


class NoiseAugmenter:
    """Mix randomly chosen noise clips into speech.

    Args:
        noise_paths: noise wav files (int16 scale, same sample rate as the speech).
        snr: SNR spec (see :func:`parse_snr`).
        num: clips averaged per call.
        sample_rate: required rate of the noise files.
    """

    def __init__(self, noise_paths: Sequence[str], snr: str | float | SnrSpec = "0",
                 num: int = 1, sample_rate: int = SAMPLE_RATE):
        if not noise_paths:
            raise ValueError("NoiseAugmenter needs at least one noise file")
        if num < 1:
            raise ValueError(f"noise_num must be >= 1, got {num}")
        self.noise_paths = list(noise_paths)
        self.snr = snr if isinstance(snr, SnrSpec) else parse_snr(snr)
        self.num = num
        self.sample_rate = sample_rate

    @classmethod
    def from_list(cls, list_path: str | os.PathLike, snr: str | float | SnrSpec = "0",
                  num: int = 1, sample_rate: int = SAMPLE_RATE) -> "NoiseAugmenter":
        return cls(read_noise_list(list_path), snr, num, sample_rate)

    def _read(self, path: str) -> np.ndarray:
        samples, rate = read_wav(path)
        if rate != self.sample_rate:
            raise ValueError(f"noise file {path!r} is {rate} Hz, expected {self.sample_rate} Hz")
        if samples.size == 0:
            raise ValueError(f"noise file {path!r} is empty")
        return samples

    def __call__(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """int16 ``[n]`` → noisy int16 ``[n]``."""
        picks = rng.integers(0, len(self.noise_paths), size=self.num)
        noise = average_noises([self._read(self.noise_paths[i]) for i in picks])
        return mix_at_snr(clean, noise, self.snr.sample(rng))
