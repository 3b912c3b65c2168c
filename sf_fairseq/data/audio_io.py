"""Reading sound files as AV-HuBERT sees them: samples on the int16 scale.

AV-HuBERT reads its (int16) wavs with ``scipy.io.wavfile`` and computes log filterbanks of the raw
int16 values, so the model expects samples in [-32768, 32767], not in [-1, 1]. Other encodings are
read at their true level and put on that scale: full scale of any encoding is 32768.

* 8- and 16-bit integer files (PCM, µ-law, A-law) give int16 samples, exactly as before;
* 24- and 32-bit integer and float/double files (what torchaudio and scipy write for float data)
  give float32 samples on the int16 scale (``float * 32768``, ``int24 / 256``, ``int32 / 65536``),
  keeping their finer resolution. Float samples beyond ±1.0 are kept as they are, with a warning.

So the same signal gives the same samples, within rounding, whatever its encoding.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import soundfile as sf

from .rates import SAMPLE_RATE

logger = logging.getLogger(__name__)

INT16_FULL_SCALE = 32768.0

# Encodings no finer than int16: libsndfile reads them as int16 without loss.
INT16_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "ULAW", "ALAW"})

# Files already reported as beyond full scale (training reads each file once per epoch).
_beyond_full_scale_reported: set[str] = set()


class AudioFormatError(ValueError):
    """A wav file is readable but not in the format the model needs (16 kHz mono)."""


def _unreadable(path: str, err: Exception) -> OSError:
    """The error for a file libsndfile cannot open, saying plainly when it is not there."""
    if not os.path.exists(path):
        return FileNotFoundError(f"audio file not found: {path!r}")
    if os.path.isdir(path):
        return IsADirectoryError(f"audio file {path!r} is a directory")
    return OSError(f"cannot read audio file {path!r}: {err}")


def _read_int16_scale(path: str) -> tuple[np.ndarray, int]:
    """``(samples [n, channels] int16 or float32, rate)`` on the int16 scale."""
    with sf.SoundFile(path) as f:
        if f.subtype in INT16_SUBTYPES:
            return f.read(dtype="int16", always_2d=True), f.samplerate
        # libsndfile scales integer encodings to [-1, 1) in float64 and leaves float data as is.
        data = f.read(dtype="float64", always_2d=True) * INT16_FULL_SCALE
        return data.astype(np.float32), f.samplerate


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a sound file on the int16 scale (see the module docstring).

    Multi-channel files are averaged to mono (rounded to int16 for 8/16-bit files); use
    :func:`read_wav_checked` where the format must already be right.

    Returns:
        ``(samples [n_samples], sample_rate)``: int16 for 8/16-bit integer encodings, float32 on
        the int16 scale for the others.

    Raises:
        OSError: naming ``path`` if it is not a readable sound file (``FileNotFoundError`` if it
            is missing, ``IsADirectoryError`` for a directory).
    """
    path = os.fspath(path)
    try:
        data, rate = _read_int16_scale(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise _unreadable(path, err) from err
    if data.dtype == np.float32 and data.size and path not in _beyond_full_scale_reported:
        peak = float(np.abs(data).max())
        if peak > INT16_FULL_SCALE:
            _beyond_full_scale_reported.add(path)
            logger.warning("%r: samples up to %.2f times full scale (float data beyond ±1.0); "
                           "read as they are, not clipped", path, peak / INT16_FULL_SCALE)
    if data.shape[1] == 1:
        return data[:, 0], rate
    mono = data.astype(np.float64).mean(axis=1)
    if data.dtype == np.int16:
        return np.rint(mono).astype(np.int16), rate
    return mono.astype(np.float32), rate


def read_wav_checked(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a mono wav at ``sample_rate`` on the int16 scale, as the dataset needs it.

    Returns:
        ``[n_samples]``: int16 for 8/16-bit integer encodings, float32 on the int16 scale for
        24/32-bit integer and float encodings (see the module docstring).

    Raises:
        OSError: unreadable file, naming it (as :func:`read_wav`).
        AudioFormatError: naming the file and what it holds if it is not mono at ``sample_rate``.
    """
    try:
        info = sf.info(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise _unreadable(os.fspath(path), err) from err
    if info.samplerate != sample_rate or info.channels != 1:
        raise AudioFormatError(
            f"{os.fspath(path)!r}: expected mono {sample_rate} Hz audio, found "
            f"{info.channels} channel(s) at {info.samplerate} Hz (resample it, e.g. "
            f"ffmpeg -i in -ac 1 -ar {sample_rate} out.wav)"
        )
    samples, _ = read_wav(path)
    return samples
