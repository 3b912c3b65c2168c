"""Where the audio has speech, and the speech-gated lip-speech score.

Voice activity comes from Silero VAD, whose model ships inside the ``silero-vad`` package (the
TorchScript file is loaded from the installed package; nothing is downloaded). It gives a speech
probability per 32 ms chunk; each 25 fps frame (640 samples at 16 kHz, the scorer's frames)
takes the overlap-weighted mean of its chunks' probabilities, a frame is speech when that is
``>= threshold``, and speech regions are widened by ``pad_frames`` frames on each side (lips
open before the sound starts and close after it ends).

The speech-gated score runs the paper's offset search (:mod:`.score`) on speech only. With
``s_i(k) = cos(V_i, A_{i+k})`` and the speech mask ``m`` of the *audio* frames::

    S_speech(k) = sum_i m_{i+k} s_i(k) / sum_i m_{i+k}        score_speech = max_k S_speech(k)

i.e. every speech frame of the audio is compared with the lips ``k`` frames earlier, and
silence never enters the mean (it is undefined, ``None``, without speech). The paper's score
is computed as before and is not changed by any of this.

:func:`audio_stats` measures what the verdict checks on the samples: silence, clipping, length.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sf_fairseq.data.audio_io import read_wav_checked
from sf_fairseq.data.rates import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

from .drift import float64_values
from .feature_cache import FeatureCache, content_key

if TYPE_CHECKING:  # torch is imported where the VAD model runs, not by the numpy-only helpers
    import torch

logger = logging.getLogger(__name__)

FULL_SCALE = 32768.0
_SILERO_CHUNK = 512  # samples per Silero VAD step at 16 kHz
_SILERO_DIST = "silero-vad"
_SILERO_MODEL = "silero_vad/data/silero_vad.jit"
# Silero's per-frame probabilities of recently analysed audio, by content. A batch job meets the
# same speech under several videos (a real clip and its frozen-mouth or partial fakes; a wav
# copied into every cell of a robustness grid), and on short clips the voice-activity model
# costs more than the encoder: 70 % of the demo's scoring stage (2026-12-02).
_RECENT_PROBABILITIES = FeatureCache(max_bytes=32 * 1024 * 1024)  # ~3 h of speech at 25 frames a second


@dataclass(frozen=True)
class SpeechSettings:
    """Voice-activity settings."""

    threshold: float = field(
        default=0.5, metadata={"help": "a 40 ms frame is speech when its mean Silero VAD probability is at least this"}
    )
    pad_frames: int = field(
        default=2, metadata={"help": "widen each speech region by this many frames on both sides"}
    )

    def as_record(self) -> dict[str, Any]:
        return {"detector": f"silero-vad {silero_version()}", **asdict(self)}


def silero_version() -> str:
    try:
        return importlib.metadata.version(_SILERO_DIST)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=1)
def _silero_model() -> "torch.jit.ScriptModule":
    import torch

    # Located through the distribution's file list rather than by importing ``silero_vad``,
    # whose import sets torch's global thread count to 1.
    try:
        path = importlib.metadata.distribution(_SILERO_DIST).locate_file(_SILERO_MODEL)
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError("speech gating needs the silero-vad package (pip install silero-vad)") from err
    model = torch.jit.load(str(path), map_location="cpu")
    return model.eval()


def frame_count(n_samples: int) -> int:
    """25 fps frames covering ``n_samples`` (a last partial frame counts)."""
    return -(-n_samples // SAMPLES_PER_FRAME)


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 (or float in [-1, 1]) samples -> float32 in [-1, 1]."""
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / FULL_SCALE
    return samples.astype(np.float32)


def chunk_to_frames(chunk_probs: np.ndarray, n_samples: int) -> np.ndarray:
    """Per-frame probabilities: each frame's overlap-weighted mean of the probabilities of the
    512-sample chunks that cover it (samples past the last chunk take its value)."""
    per_sample = np.repeat(chunk_probs.astype(np.float64), _SILERO_CHUNK)[:n_samples]
    if per_sample.size < n_samples:
        per_sample = np.pad(per_sample, (0, n_samples - per_sample.size), mode="edge")
    n_frames = frame_count(n_samples)
    padded = np.pad(per_sample, (0, n_frames * SAMPLES_PER_FRAME - n_samples), mode="edge")
    return padded.reshape(n_frames, SAMPLES_PER_FRAME).mean(axis=1)


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Silero VAD speech probability of every 25 fps frame of 16 kHz mono ``samples``,
    shape ``(ceil(N / 640),)``. The same samples analysed again reuse the result (the model
    starts from reset states, so it is the same)."""
    import torch

    if samples.size == 0:
        return np.zeros(0)
    key = content_key("speech", samples)
    probabilities = _RECENT_PROBABILITIES.get(key)
    if probabilities is None:
        model = _silero_model()
        model.reset_states()
        with torch.inference_mode():
            chunk_probs = model.audio_forward(torch.from_numpy(to_float(samples))[None], SAMPLE_RATE)[0]
        probabilities = chunk_to_frames(chunk_probs.numpy(), samples.size)
        _RECENT_PROBABILITIES.put(key, probabilities)
    return probabilities.copy()


def dilate(mask: np.ndarray, pad: int) -> np.ndarray:
    """``mask`` with every True run widened by ``pad`` frames on each side."""
    if pad <= 0 or not mask.any():
        return mask.copy()
    kernel = np.ones(2 * pad + 1)
    return np.convolve(mask.astype(np.float64), kernel, mode="same") > 0


def speech_frames(samples: np.ndarray, settings: SpeechSettings = SpeechSettings()) -> np.ndarray:
    """Bool speech mask per 25 fps frame of 16 kHz mono ``samples``."""
    return dilate(speech_probabilities(samples) >= settings.threshold, settings.pad_frames)


@dataclass
class AudioStats:
    """What the verdict checks on a clip's samples.

    Attributes:
        n_samples: samples read (after the scorer's cap).
        duration_s: ``n_samples / 16000``.
        peak: largest absolute sample, as a fraction of full scale.
        rms_dbfs: RMS level in dB relative to full scale (None for digital silence).
        clipped_fraction: fraction of samples at or beyond 99.9 % of full scale.
    """

    n_samples: int
    duration_s: float
    peak: float
    rms_dbfs: float | None
    clipped_fraction: float


def audio_stats(samples: np.ndarray) -> AudioStats:
    x = to_float(samples).astype(np.float64)
    if x.size == 0:
        return AudioStats(0, 0.0, 0.0, None, 0.0)
    rms = float(np.sqrt(np.mean(x * x)))
    return AudioStats(
        n_samples=int(x.size),
        duration_s=x.size / SAMPLE_RATE,
        peak=float(np.abs(x).max()),
        rms_dbfs=20.0 * float(np.log10(rms)) if rms > 0 else None,
        clipped_fraction=float(np.mean(np.abs(x) >= 0.999)),
    )


@dataclass
class AudioAnalysis:
    """Everything the verdict needs from a clip's wav (picklable: it can be computed in a data
    loader worker)."""

    stats: AudioStats
    speech: np.ndarray  # (n_frames,) bool
    settings: SpeechSettings
    full_duration_s: float  # the whole wav, before the scorer's cap


def analyse_wav(
    path: str, settings: SpeechSettings = SpeechSettings(), max_seconds: float | None = 50.0
) -> AudioAnalysis:
    """Read a 16 kHz mono wav (first ``max_seconds``, as the scorer) and analyse it.

    Raises:
        OSError, ValueError: unreadable file or wrong format (as :func:`read_wav_checked`).
    """
    samples = read_wav_checked(path, SAMPLE_RATE)
    full = samples.shape[0] / SAMPLE_RATE
    if max_seconds is not None:
        samples = samples[: int(round(SAMPLE_RATE * max_seconds))]
    return AudioAnalysis(audio_stats(samples), speech_frames(samples, settings), settings, full)


@dataclass
class GatedScore:
    """The speech-gated score of one clip (module docstring).

    Attributes:
        score_speech: ``max_k S_speech(k)``; None without speech frames.
        best_offset_speech: its maximising ``k`` (frames); None without speech.
        curve_speech: ``S_speech(k)``, ``k = -K..K`` (None entries where no speech frame pairs
            with a lip frame at that offset).
        speech_frames: speech frames among the clip's ``T`` scored frames.
        speech_seconds: ``speech_frames / fps``.
        speech_fraction: ``speech_frames / T``.
    """

    score_speech: float | None
    best_offset_speech: int | None
    curve_speech: list[float | None]
    speech_frames: int
    speech_seconds: float
    speech_fraction: float

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def gated_score(sims: torch.Tensor | np.ndarray, speech: np.ndarray, fps: float = FPS) -> GatedScore:
    """Speech-gated score from the scorer's ``s_i(k)`` (``ClipResult.sims``, ``(T, 2K + 1)``)
    and the speech mask of the audio frames (``(n,)`` bool; cut or padded with silence to
    ``T``)."""
    s = float64_values(sims)
    t, width = s.shape
    k_max = (width - 1) // 2
    m = np.zeros(t, dtype=bool)
    m[: min(t, len(speech))] = np.asarray(speech[:t], dtype=bool)
    n_speech = int(m.sum())
    # mask[i, c] = m[i + c - K]: the audio frame that row i meets at offset k = c - K.
    padded = np.pad(m, (k_max, k_max))
    mask = np.lib.stride_tricks.sliding_window_view(padded, width)[:t]
    counts = mask.sum(axis=0)
    sums = (s * mask).sum(axis=0)
    curve = np.full(width, -np.inf)
    np.divide(sums, counts, out=curve, where=counts > 0)
    usable = counts > 0
    best = int(np.argmax(curve)) if usable.any() else None
    return GatedScore(
        score_speech=None if best is None else float(curve[best]),
        best_offset_speech=None if best is None else best - k_max,
        curve_speech=[float(c) if ok else None for c, ok in zip(curve, usable)],
        speech_frames=n_speech,
        speech_seconds=n_speech / fps,
        speech_fraction=n_speech / t if t else 0.0,
    )
