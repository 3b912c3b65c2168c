"""Mouth-ROI clips from the synthetic generator's speech, and an encoder that understands them.

A clip is a 16 kHz wav with an espeak-ng utterance of the synthetic generator placed ``lead``
seconds in (:mod:`sf_fairseq.preprocess.synthetic`), and a 96x96 25 fps mp4 whose "mouth" (a
bright disc) opens with the loudness of that speech, frame by frame (the generator's own mouth
track follows phoneme classes, which a loudness-reading encoder matches only roughly). :class:`OpeningEncoder` reads the
disc's brightness and the audio's loudness, so its lip-speech similarities peak at the true
audio-video offset (the tiny fixture checkpoint's features carry no such meaning).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch

from sf_fairseq.preprocess.synthetic.clips import place_audio
from sf_fairseq.preprocess.synthetic.speech import Utterance, Voice, speak

SPF = 640
SENTENCE = "Yesterday the old teacher finds a red boat near the river and my sister buys bread at the market."


def utterance(text: str = SENTENCE) -> Utterance:
    return speak(text, Voice("en-us", 160))


def loudness(audio: np.ndarray) -> np.ndarray:
    """Per-frame opening in [0, 1] from the frame's RMS level (-50 dBFS and below: closed)."""
    frames = audio[: len(audio) // SPF * SPF].reshape(-1, SPF).astype(np.float64) / 32768
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    return np.clip((db + 50) / 40, 0.0, 1.0)


def write_clip(path: Path, opening: np.ndarray, audio: np.ndarray, size: int = 96) -> tuple[Path, Path]:
    """``path`` (mp4, the disc opening per frame) and ``path.wav`` (int16 ``audio``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size, size))
    for e in opening:
        frame = np.full((size, size), 40, np.uint8)
        cv2.circle(frame, (size // 2, size // 2), int(4 + 30 * e), 220, -1)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    wav = path.with_suffix(".wav")
    sf.write(wav, audio.astype(np.int16), 16000, subtype="PCM_16")
    return path, wav


def speech_clip(path: Path, utt: Utterance, lead: float = 0.3, tail: float = 0.3,
                audio_shift_frames_after: tuple[int, int] | None = None,
                silent: bool = False, audio_seconds: float | None = None) -> tuple[Path, Path]:
    """A real-looking clip of ``utt`` (lips follow the speech).

    Args:
        lead, tail: silence before and after the utterance (s).
        audio_shift_frames_after: ``(frame, shift)``: from ``frame`` on, the audio is delayed by
            ``shift`` frames (a re-timed second part; the gap is silence).
        silent: all-zero audio (a silent-audio fake: lips move, nothing is heard).
        audio_seconds: cut the wav to this length (a truncated audio stream).
    """
    n_frames = int(np.ceil((lead + utt.duration + tail) * 25))
    audio = place_audio(utt.audio, lead, n_frames)
    opening = loudness(audio)
    if audio_shift_frames_after is not None:
        frame, shift = audio_shift_frames_after
        cut = frame * SPF
        audio = np.r_[audio[:cut], np.zeros(shift * SPF, np.int16), audio[cut:len(audio) - shift * SPF]]
    if silent:
        audio = np.zeros_like(audio)
    if audio_seconds is not None:
        audio = audio[: int(audio_seconds * 16000)]
    return write_clip(path, opening, audio)


class OpeningEncoder(torch.nn.Module):
    """AV-HuBERT's ``extract_finetune`` signature. Lip signal = disc brightness (mouth opening),
    speech signal = mean log filterbank energy (loudness); each frame's feature is its signal
    over the ``2 * context + 1`` frames around it, minus their mean. The cosine of two features
    is then the local correlation of opening and loudness: it peaks at the true audio-video
    offset, and is 0 where either stream is constant (silence, a still mouth). Use with
    ``InputSettings(normalize=False)`` (per-frame normalisation removes loudness)."""

    def __init__(self, context: int = 4):
        super().__init__()
        self.context = context
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def extract_finetune(self, source, padding_mask=None, output_layer=None):
        video, audio = source["video"], source["audio"]
        x = video[:, 0].mean(dim=(2, 3)) if video is not None else audio.mean(dim=1)  # [B, T]
        c = self.context
        windows = torch.nn.functional.pad(x[:, None], (c, c), mode="replicate")[:, 0].unfold(1, 2 * c + 1, 1)
        feats = windows - windows.mean(dim=-1, keepdim=True)
        feats = torch.where(feats.abs() < 1e-4, torch.zeros_like(feats), feats)  # constant: no feature
        if padding_mask is not None:
            feats = feats * (~padding_mask)[..., None]
        return feats, padding_mask
