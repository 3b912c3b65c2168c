"""Reading wav files as AV-HuBERT does: int16 samples on their raw scale."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf


class AudioFormatError(ValueError):
    """A wav file is readable but not in the format the model needs (16 kHz mono)."""


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a sound file as int16 samples.

    Multi-channel files are averaged to mono (rounded to int16); use :func:`read_wav_checked`
    where the format must already be right.

    Returns:
        ``(samples int16 [n_samples], sample_rate)``.

    Raises:
        OSError: naming ``path`` if it is missing or not a readable sound file.
    """
    try:
        data, rate = sf.read(os.fspath(path), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise OSError(f"cannot read audio file {os.fspath(path)!r}: {err}") from err
    if data.shape[1] == 1:
        return data[:, 0], rate
    mono = np.rint(data.astype(np.float64).mean(axis=1)).astype(np.int16)
    return mono, rate


def read_wav_checked(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Read a mono wav at ``sample_rate`` as int16 ``[n_samples]``, as the dataset needs it.

    Raises:
        OSError: unreadable file (naming it).
        AudioFormatError: naming the file and what it holds if it is not mono at ``sample_rate``.
    """
    try:
        info = sf.info(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise OSError(f"cannot read audio file {os.fspath(path)!r}: {err}") from err
    if info.samplerate != sample_rate or info.channels != 1:
        raise AudioFormatError(
            f"{os.fspath(path)!r}: expected mono {sample_rate} Hz audio, found "
            f"{info.channels} channel(s) at {info.samplerate} Hz (resample it, e.g. "
            f"ffmpeg -i in -ac 1 -ar {sample_rate} out.wav)"
        )
    samples, _ = read_wav(path)
    return samples
