"""Audio front-end features of AV-HuBERT: log mel filterbank energies, stacked to 25 Hz.

AV-HuBERT feeds ``python_speech_features.logfbank`` of the raw int16 waveform (not scaled to
[-1, 1]) with that library's defaults: 25 ms rectangular window, 10 ms hop, pre-emphasis 0.97,
512-point FFT power spectrum, 26 triangular mel filters on integer FFT bins, zero energies
replaced by machine epsilon before the log. :func:`logfbank` reproduces it exactly, vectorised
over frames. Four consecutive 100 Hz frames are then stacked (zero-padding the tail) into one
104-dimensional 25 Hz frame, one per video frame, and optionally normalised per frame.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .rates import SAMPLE_RATE

# python_speech_features defaults, as AV-HuBERT calls it.
WINLEN_S = 0.025
WINSTEP_S = 0.01
NFILT = 26
NFFT = 512
PREEMPH = 0.97
LOG_FLOOR = np.finfo(float).eps


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray | float:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray | float) -> np.ndarray | float:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(
    nfilt: int = NFILT, nfft: int = NFFT, sample_rate: int = SAMPLE_RATE,
    lowfreq: float = 0.0, highfreq: float | None = None,
) -> np.ndarray:
    """Triangular mel filters on integer FFT bins, as python_speech_features builds them.

    Returns:
        float64 ``[nfilt, nfft // 2 + 1]`` (read-only: it is cached).
    """
    highfreq = highfreq or sample_rate / 2
    mel_points = np.linspace(_hz_to_mel(lowfreq), _hz_to_mel(highfreq), nfilt + 2)
    # The library floors the band edges to FFT bins; filters are triangles between them.
    edges = np.floor((nfft + 1) * _mel_to_hz(mel_points) / sample_rate)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = np.arange(nfft // 2 + 1, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= left) & (bins < centre),
                          (bins - left) / (centre - left), 0.0)
        falling = np.where((bins >= centre) & (bins < right),
                           (right - bins) / (right - centre), 0.0)
    bank = rising + falling
    bank.setflags(write=False)
    return bank


def frame_signal(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    """Split into overlapping frames, zero-padding the end so the last frame is complete.

    A signal no longer than one frame gives one frame; otherwise
    ``1 + ceil((len - frame_len) / frame_step)`` frames (python_speech_features' rule).

    Returns:
        ``[n_frames, frame_len]`` (a copy, same dtype as ``signal``).
    """
    return _frame_view(signal, frame_len, frame_step).copy()


def _frame_view(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    """:func:`frame_signal` as a read-only strided view of the padded signal (no copy: the
    overlapping frames would be 2.5x the signal)."""
    n = len(signal)
    n_frames = 1 if n <= frame_len else 1 + math.ceil((n - frame_len) / frame_step)
    pad_len = (n_frames - 1) * frame_step + frame_len
    padded = np.concatenate([signal, np.zeros(pad_len - n, dtype=signal.dtype)])
    return np.lib.stride_tricks.sliding_window_view(padded, frame_len)[::frame_step]


def logfbank(signal: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Log mel filterbank energies, equal to ``python_speech_features.logfbank(signal, rate)``.

    Args:
        signal: 1-D waveform ``[n_samples]`` on its own scale (AV-HuBERT passes raw int16).
        sample_rate: samples per second.

    Returns:
        float64 ``[n_frames, 26]`` at 100 frames per second.
    """
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"logfbank expects a 1-D waveform, got shape {signal.shape}")
    if signal.size == 0:
        raise ValueError("logfbank got an empty waveform")
    x = signal.astype(np.float64)
    emphasised = np.concatenate([x[:1], x[1:] - PREEMPH * x[:-1]])
    frames = _frame_view(
        emphasised, _round_half_up(WINLEN_S * sample_rate), _round_half_up(WINSTEP_S * sample_rate)
    )
    # The same operations as the library, in place where it saves a temporary.
    power = np.abs(np.fft.rfft(frames, NFFT))  # [n_frames, NFFT/2+1]
    np.square(power, out=power)
    power /= NFFT
    energies = power @ mel_filterbank(NFILT, NFFT, sample_rate).T
    energies[energies == 0] = LOG_FLOOR
    return np.log(energies, out=energies)


def stack_frames(feats: np.ndarray, stack_order: int) -> np.ndarray:
    """Concatenate each ``stack_order`` consecutive frames into one, zero-padding the tail.

    Args:
        feats: ``[T, F]``.

    Returns:
        ``[ceil(T / stack_order), F * stack_order]``, same dtype; frame ``i`` is
        ``feats[i*k : (i+1)*k]`` flattened in time order.
    """
    if stack_order < 1:
        raise ValueError(f"stack_order must be >= 1, got {stack_order}")
    n, dim = feats.shape
    rem = (-n) % stack_order
    if rem:
        feats = np.concatenate([feats, np.zeros((rem, dim), dtype=feats.dtype)], axis=0)
    return feats.reshape(-1, stack_order * dim)


def normalize_per_frame(feats: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Per-frame layer norm over the feature dim (eps 1e-5, no affine), as AV-HuBERT's
    ``F.layer_norm(feats, feats.shape[1:])`` on ``[T, F]``. Returns the input's type."""
    if isinstance(feats, torch.Tensor):
        return F.layer_norm(feats, feats.shape[-1:])
    out = F.layer_norm(torch.from_numpy(np.ascontiguousarray(feats)), feats.shape[-1:])
    return out.numpy()


def audio_features_from_wav(
    samples: np.ndarray, stack_order: int = 4, normalize: bool = True, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """AV-HuBERT audio input of a waveform: logfbank → stack → (per-frame norm).

    Args:
        samples: int16 (or raw int16-scale) waveform ``[n_samples]`` at ``sample_rate``.

    Returns:
        float32 ``[ceil(n_frames / stack_order), 26 * stack_order]`` — ``[T_a, 104]`` at 25 Hz
        for the default ``stack_order=4``. Not yet padded/trimmed to the video length.
    """
    feats = stack_frames(logfbank(samples, sample_rate).astype(np.float32), stack_order)
    return normalize_per_frame(feats) if normalize else feats
