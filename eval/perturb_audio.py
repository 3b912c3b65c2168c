"""Audio perturbations for robustness tests, levels 1-5 (beyond the video-only protocol: the
score compares lips with speech, so it also depends on the audio).

======== ===================================== ====== ====== ====== ====== ======
code     what                                  L1     L2     L3     L4     L5
======== ===================================== ====== ====== ====== ====== ======
noise    white Gaussian noise at SNR (dB)      20     15     10     5      0
aac      AAC (FFmpeg's encoder), kbit/s        64     48     32     24     16
mp3      MP3 (LAME), kbit/s                    64     48     32     24     16
resample down to this rate (Hz) and back up    12000  8000   6000   4000   3000
band     band-pass low-high Hz (telephone L3)  100-   200-   300-   400-   500-
                                               7000   5000   3400   2500   1800
======== ===================================== ====== ====== ====== ====== ======

Every function maps ``int16 [n]`` or ``[channels, n]`` at ``sample_rate`` to an ``int16``
array of the same shape and sample rate, aligned sample for sample with the input (sync with
the video is kept):

* noise: the SNR is the RMS ratio of the signal to the added noise, per channel
  (:func:`sf_fairseq.data.noise.mix_at_snr`, which scales the mix down as a whole rather than
  clip it);
* compression: an in-memory encode and decode with PyAV (AAC in MP4, whose edit list removes
  the encoder delay; MP3 with a LAME header, which does the same); the decoded signal is cut
  to the input length. LAME rounds a bit rate to one its MPEG version allows at that sample
  rate (at 32-48 kHz the lowest is 32 kbit/s);
* resampling: polyphase filtering (``scipy.signal.resample_poly``, linear phase, no delay);
* band limiting: 4th-order Butterworth band-pass run forwards and backwards (zero phase);
  a cut-off at or above Nyquist is dropped (the filter becomes a high-pass).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import av
import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

from sf_fairseq.data.noise import mix_at_snr

LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class AudioPerturbation:
    """One audio perturbation type: code, readable name, parameter unit and the parameter of
    each level."""

    code: str
    name: str
    unit: str
    params: tuple

    def param(self, level: int):
        if level not in LEVELS:
            raise ValueError(f"{self.code}: level must be one of {LEVELS}, got {level!r}")
        return self.params[level - 1]


AUDIO_PERTURBATIONS: dict[str, AudioPerturbation] = {
    p.code: p
    for p in (
        AudioPerturbation("noise", "white noise", "SNR dB", (20, 15, 10, 5, 0)),
        AudioPerturbation("aac", "AAC", "kbit/s", (64, 48, 32, 24, 16)),
        AudioPerturbation("mp3", "MP3", "kbit/s", (64, 48, 32, 24, 16)),
        AudioPerturbation("resample", "resampling", "Hz", (12000, 8000, 6000, 4000, 3000)),
        AudioPerturbation(
            "band", "band-pass", "Hz", ((100, 7000), (200, 5000), (300, 3400), (400, 2500), (500, 1800))
        ),
    )
}

# codec -> (PyAV encoder, container format that carries the encoder delay)
_CODECS = {"aac": ("aac", "mp4"), "mp3": ("libmp3lame", "mp3")}
_CHUNK = 1152  # samples per frame handed to the encoder (it re-frames as it needs)


def _as_2d(signal: np.ndarray) -> tuple[np.ndarray, bool]:
    signal = np.asarray(signal)
    if signal.ndim == 1:
        return signal[None], True
    if signal.ndim != 2:
        raise ValueError(f"audio must be [n] or [channels, n], got shape {signal.shape}")
    return signal, False


def _to_int16(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), -32768, 32767).astype(np.int16)


def add_noise(signal: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` (signal RMS over noise RMS, per channel)."""
    x, flat = _as_2d(signal)
    out = np.stack([mix_at_snr(ch, rng.standard_normal(ch.shape[0]), snr_db) for ch in x])
    return out[0] if flat else out


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels) or f"{channels}c"


def encode_bytes(signal: np.ndarray, sample_rate: int, codec: str, kbps: float) -> bytes:
    """``signal`` encoded with ``codec`` (``aac`` or ``mp3``) at ``kbps`` kbit/s, as a file's
    bytes (MP4 for AAC, MP3 for MP3)."""
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {sorted(_CODECS)}, got {codec!r}")
    x, _ = _as_2d(signal)
    encoder, fmt = _CODECS[codec]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(encoder, rate=sample_rate, layout=_layout(x.shape[0]))
        stream.bit_rate = int(kbps * 1000)
        for start in range(0, x.shape[1], _CHUNK):
            chunk = np.ascontiguousarray(x[:, start : start + _CHUNK].astype(np.int16))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16p", layout=stream.layout.name)
            frame.sample_rate, frame.pts = sample_rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def decode_bytes(data: bytes, sample_rate: int, channels: int) -> np.ndarray:
    """Decode the first audio stream of an in-memory file to ``int16 [channels, n]`` at
    ``sample_rate``."""
    parts = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16p", layout=_layout(channels), rate=sample_rate)
        for frame in container.decode(stream):
            parts += [r.to_ndarray() for r in resampler.resample(frame)]
        parts += [r.to_ndarray() for r in resampler.resample(None)]
    return np.concatenate(parts, axis=1) if parts else np.zeros((channels, 0), np.int16)


def compress(signal: np.ndarray, sample_rate: int, codec: str, kbps: float) -> np.ndarray:
    """Encode with ``codec`` at ``kbps`` and decode back, aligned and cut to the input length."""
    x, flat = _as_2d(signal)
    y = decode_bytes(encode_bytes(x, sample_rate, codec, kbps), sample_rate, x.shape[0])
    n = x.shape[1]
    y = np.pad(y[:, :n], ((0, 0), (0, max(0, n - y.shape[1]))))
    return y[0] if flat else y


def resample_through(signal: np.ndarray, sample_rate: int, via_rate: int) -> np.ndarray:
    """Resample to ``via_rate`` and back to ``sample_rate`` (a no-op when ``via_rate`` is not
    lower); the length is kept."""
    x, flat = _as_2d(signal)
    if via_rate >= sample_rate:
        return np.asarray(signal).copy()
    g = math.gcd(int(sample_rate), int(via_rate))
    up, down = int(via_rate) // g, int(sample_rate) // g
    low = resample_poly(x.astype(np.float64), up, down, axis=1)
    back = resample_poly(low, down, up, axis=1)[:, : x.shape[1]]
    back = np.pad(back, ((0, 0), (0, x.shape[1] - back.shape[1])))
    out = _to_int16(back)
    return out[0] if flat else out


def band_limit(signal: np.ndarray, sample_rate: int, low_hz: float, high_hz: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass ``[low_hz, high_hz]``."""
    x, flat = _as_2d(signal)
    nyquist = sample_rate / 2.0
    if not 0 < low_hz < nyquist:
        raise ValueError(f"low cut-off {low_hz} Hz must be in (0, {nyquist}) at {sample_rate} Hz")
    if high_hz < nyquist * 0.99:
        sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    else:
        sos = butter(order, low_hz, btype="highpass", fs=sample_rate, output="sos")
    if x.shape[1] <= 3 * (2 * len(sos) + 1):  # too short for filtfilt's padding
        return np.asarray(signal).copy()
    out = _to_int16(sosfiltfilt(sos, x.astype(np.float64), axis=1))
    return out[0] if flat else out


AudioFn = Callable[[np.ndarray, int], np.ndarray]


def audio_perturbation(code: str, level: int, rng: np.random.Generator) -> AudioFn:
    """``fn(signal, sample_rate) -> signal`` for ``code`` at ``level``."""
    try:
        p = AUDIO_PERTURBATIONS[code].param(level)
    except KeyError:
        raise ValueError(
            f"unknown audio perturbation {code!r}; choose from {sorted(AUDIO_PERTURBATIONS)}"
        ) from None
    if code == "noise":
        return lambda x, sr: add_noise(x, p, rng)
    if code in _CODECS:
        return lambda x, sr: compress(x, sr, code, p)
    if code == "resample":
        return lambda x, sr: resample_through(x, sr, p)
    return lambda x, sr: band_limit(x, sr, *p)
