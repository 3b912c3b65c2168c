"""Phonemes → viseme classes → mouth-shape parameters per 25 fps video frame.

Every espeak-ng phoneme mnemonic (stress marks stripped) maps to a viseme class; a class is a
target mouth shape ``(open, width)`` plus a *dominance*: ``open`` is the lip/jaw opening in
[0, 1] (0 = lips together), ``width`` is lip spreading in [-1, 1] (-1 = rounded/protruded,
+1 = spread). Diphthongs get two targets (first and second half).

Co-articulation follows the dominance model of Cohen & Massaro (1993): the shape at time t is
the dominance-weighted mean of all targets, a target's dominance being its class strength inside
its segment and decaying exponentially with the distance outside it. Bilabials (p, b, m) dominate
strongly so the lips really close even in fast speech; alveolars and velars (whose articulation
is inside the mouth) dominate weakly and take their shape from neighbouring vowels. The shape
is evaluated every 5 ms and averaged over each 40 ms frame (what a camera's exposure does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sf_fairseq.data.rates import FPS

from .speech import Phoneme


@dataclass(frozen=True)
class Viseme:
    """A viseme class: target opening [0, 1], width [-1, 1] and dominance (> 0)."""

    name: str
    open: float
    width: float
    dominance: float


REST = Viseme("rest", 0.02, 0.0, 1.5)
CLOSED = Viseme("closed", 0.0, 0.0, 10.0)
LIP_TEETH = Viseme("lip_teeth", 0.1, 0.1, 5.0)
ROUNDED = Viseme("rounded", 0.38, -0.85, 2.5)
POSTALVEOLAR = Viseme("postalveolar", 0.28, -0.5, 2.0)
SPREAD = Viseme("spread", 0.32, 0.75, 2.0)
OPEN = Viseme("open", 0.95, 0.15, 2.0)
MID = Viseme("mid", 0.6, 0.05, 1.5)
DENTAL = Viseme("dental", 0.25, 0.15, 1.5)
CONSONANT = Viseme("consonant", 0.3, 0.1, 0.6)

VISEMES = {v.name: v for v in (REST, CLOSED, LIP_TEETH, ROUNDED, POSTALVEOLAR, SPREAD, OPEN, MID,
                               DENTAL, CONSONANT)}

# espeak-ng English mnemonics (stress marks removed). Tuples are diphthongs: (first, second half).
_PHONEME_CLASSES: dict[str, Viseme | tuple[Viseme, Viseme]] = {
    **{p: CLOSED for p in ("p", "b", "m")},
    **{p: LIP_TEETH for p in ("f", "v")},
    **{p: ROUNDED for p in ("w", "u:", "u", "U", "O:", "O", "O@", "o@", "U@", "0", "o", "W")},
    **{p: POSTALVEOLAR for p in ("S", "Z", "tS", "dZ", "r", "r-")},
    **{p: SPREAD for p in ("i:", "i", "I", "I2", "I#", "i@", "j", "s", "z", "e")},
    **{p: OPEN for p in ("a", "a#", "A:", "A@", "aa", "a@", "V", "A")},
    **{p: MID for p in ("@", "@2", "@5", "@L", "3", "3:", "E", "e@", "E2", "E@")},
    **{p: DENTAL for p in ("T", "D")},
    **{p: REST for p in ("_", "_:", "_!", "_|", "||", "|", "")},
    "aI": (OPEN, SPREAD),
    "aI@": (OPEN, SPREAD),
    "aU": (OPEN, ROUNDED),
    "oU": (MID, ROUNDED),
    "OI": (ROUNDED, SPREAD),
    "eI": (MID, SPREAD),
    "i@3": (SPREAD, MID),
}


def viseme_of(symbol: str) -> Viseme | tuple[Viseme, Viseme]:
    """Viseme class (or the two of a diphthong) of an espeak-ng phoneme mnemonic. Stress and
    length marks are ignored; unknown consonants get the weak :data:`CONSONANT` class."""
    key = symbol.replace("'", "").replace(",", "").replace("%", "").replace("=", "")
    if key in _PHONEME_CLASSES:
        return _PHONEME_CLASSES[key]
    if key.endswith(":") and key[:-1] in _PHONEME_CLASSES:
        return _PHONEME_CLASSES[key[:-1]]
    return CONSONANT


@dataclass
class MouthTrack:
    """Mouth shape per video frame: ``open`` [T] in [0, 1], ``width`` [T] in [-1, 1]."""

    open: np.ndarray
    width: np.ndarray

    def __len__(self) -> int:
        return len(self.open)

    def window(self, start: int, stop: int) -> "MouthTrack":
        return MouthTrack(self.open[start:stop].copy(), self.width[start:stop].copy())


def _targets(phonemes: list[Phoneme]) -> tuple[np.ndarray, np.ndarray]:
    """Segments ``[N, 2]`` (start, end s) and their targets ``[N, 3]`` (open, width, dominance)."""
    segments, targets = [], []
    for ph in phonemes:
        cls = viseme_of(ph.symbol)
        halves = cls if isinstance(cls, tuple) else (cls,)
        step = (ph.end - ph.start) / len(halves)
        for k, v in enumerate(halves):
            segments.append((ph.start + k * step, ph.start + (k + 1) * step))
            targets.append((v.open, v.width, v.dominance))
    return np.asarray(segments, np.float64).reshape(-1, 2), np.asarray(targets, np.float64).reshape(-1, 3)


def mouth_track(
    phonemes: list[Phoneme],
    n_frames: int,
    offset: float = 0.0,
    tau: float = 0.035,
    fps: int = FPS,
) -> MouthTrack:
    """Mouth shapes for ``n_frames`` frames of a clip in which the phonemes start ``offset``
    seconds after the clip starts. Outside the phonemes the mouth rests.

    Args:
        phonemes: segments in seconds from the start of their utterance.
        n_frames: number of video frames T.
        offset: where time 0 of the phonemes falls in the clip (s).
        tau: decay of a target's dominance outside its segment (s); larger = more
            co-articulation, smoother motion.
    """
    segments, targets = _targets(phonemes)
    # Rest before and after the speech, so silence closes the mouth.
    end = n_frames / fps
    speech_end = segments[-1, 1] + offset if len(segments) else 0.0
    segments = np.vstack([[[-1.0, 0.0]], segments + offset, [[speech_end, end + 1.0]]])
    targets = np.vstack([[REST.open, REST.width, REST.dominance], targets,
                         [REST.open, REST.width, REST.dominance]])
    sub = 8  # 5 ms sub-samples per 40 ms frame
    t = (np.arange(n_frames * sub) + 0.5) / (fps * sub)
    distance = np.maximum(0.0, np.maximum(segments[None, :, 0] - t[:, None], t[:, None] - segments[None, :, 1]))
    weight = targets[None, :, 2] * np.exp(-distance / tau)  # [S, N]
    weight /= weight.sum(axis=1, keepdims=True)
    shape = weight @ targets[:, :2]  # [S, 2]
    shape = shape.reshape(n_frames, sub, 2).mean(axis=1)
    return MouthTrack(np.clip(shape[:, 0], 0.0, 1.0), np.clip(shape[:, 1], -1.0, 1.0))
