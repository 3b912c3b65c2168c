"""Real recorded speech with aligned phones, as :class:`~.speech.Utterance` objects.

The package ships a few short excerpts of a public-domain LibriVox reading (Shakespeare's
Sonnet 1, 16 kHz mono FLAC, about 14 s in all) in ``speech/`` together with
``speech/alignments.json``: phone timings computed once, offline, by pocketsphinx forced
alignment (:mod:`.align_recordings` recreates both; ``speech/README.md`` gives source and
licence). Nothing is downloaded and no aligner runs here.

pocketsphinx phones are ARPAbet without stress marks (``AA``, ``IY``, ``SIL``, ...); they are
mapped to the espeak-ng mnemonics that :mod:`.visemes` knows (``A:``, ``i:``, ``_``, ...), so
a recorded utterance drives the mouth exactly like a synthetic one.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sf_fairseq.data.audio_io import read_wav_checked
from sf_fairseq.data.rates import SAMPLE_RATE

from .speech import Phoneme, Utterance, Voice

SPEECH_DIR = Path(__file__).with_name("speech")
ALIGNMENTS = "alignments.json"

# ARPAbet (CMUdict, stress removed) -> espeak-ng English mnemonic. AH is mostly unstressed in
# running speech, so it maps to schwa; silences and fillers map to the pause "_".
ARPABET_TO_ESPEAK = {
    "AA": "A:", "AE": "a", "AH": "@", "AO": "O:", "AW": "aU", "AY": "aI", "EH": "E", "ER": "3:",
    "EY": "eI", "IH": "I", "IY": "i:", "OW": "oU", "OY": "OI", "UH": "U", "UW": "u:",
    "B": "b", "CH": "tS", "D": "d", "DH": "D", "F": "f", "G": "g", "HH": "h", "JH": "dZ",
    "K": "k", "L": "l", "M": "m", "N": "n", "NG": "N", "P": "p", "R": "r", "S": "s", "SH": "S",
    "T": "t", "TH": "T", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "Z", "SIL": "_",
}


def arpabet_to_espeak(phone: str) -> str:
    """espeak-ng mnemonic of an ARPAbet phone (stress digits ignored; unknown/noise → ``_``)."""
    return ARPABET_TO_ESPEAK.get(phone.rstrip("012").upper(), "_")


@dataclass(frozen=True)
class Recording:
    """One shipped excerpt: its FLAC file, transcript, provenance and aligned ARPAbet phones
    ``[(phone, start s, end s)]`` relative to the excerpt's start."""

    file: str
    text: str
    source: str
    licence: str
    source_span: tuple[float, float]
    phones: tuple[tuple[str, float, float], ...]

    def metadata(self) -> dict:
        return {"file": self.file, "source": self.source, "licence": self.licence,
                "source_span": list(self.source_span)}


@dataclass
class RecordedUtterance(Utterance):
    """An :class:`Utterance` of real recorded speech (``voice.name`` is ``"recorded"``)."""

    recording: Recording | None = None

    def metadata(self) -> dict:
        meta = super().metadata()
        meta["voice"] = None
        meta["recording"] = self.recording.metadata() if self.recording else None
        return meta


@functools.lru_cache(maxsize=4)
def load_recordings(folder: str | Path = SPEECH_DIR) -> tuple[Recording, ...]:
    """The excerpts listed in ``<folder>/alignments.json``, in file order. Phone timings are
    checked: non-decreasing, each ``start < end``, inside ``[0, duration]``."""
    path = Path(folder) / ALIGNMENTS
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["excerpts"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: cannot read the recorded-speech alignments ({e})") from e
    recordings = []
    for entry in entries:
        phones = tuple((str(p), float(s), float(e)) for p, s, e in entry["phones"])
        previous = 0.0
        for p, s, e in phones:
            if not (previous - 1e-6 <= s < e <= float(entry["duration"]) + 1e-6):
                raise ValueError(f"{path}: {entry['file']}: phone {p} at [{s}, {e}] is out of "
                                 f"order or outside the {entry['duration']} s excerpt")
            previous = e
        recordings.append(Recording(file=entry["file"], text=entry["text"], source=entry["source"],
                                    licence=entry["licence"],
                                    source_span=tuple(entry["source_span"]), phones=phones))
    if not recordings:
        raise ValueError(f"{path}: no excerpts listed")
    return tuple(recordings)


def recorded_utterance(recording: Recording, folder: str | Path = SPEECH_DIR) -> RecordedUtterance:
    """Load one excerpt: 16 kHz int16 audio and its phones as espeak-ng mnemonics (seconds),
    clipped to the audio."""
    path = Path(folder) / recording.file
    try:
        audio = read_wav_checked(path, SAMPLE_RATE)  # AudioFormatError (a ValueError) unless 16 kHz mono
    except OSError as e:
        raise ValueError(f"{path}: cannot read recorded speech ({e})") from e
    duration = len(audio) / SAMPLE_RATE
    phonemes = [Phoneme(arpabet_to_espeak(p), s, min(e, duration))
                for p, s, e in recording.phones if s < duration]
    return RecordedUtterance(text=recording.text, voice=Voice(name="recorded"), audio=audio,
                             phonemes=phonemes, recording=recording)


def random_recorded_utterance(rng: np.random.Generator, folder: str | Path = SPEECH_DIR) -> RecordedUtterance:
    """A recorded excerpt drawn uniformly with ``rng``."""
    recordings = load_recordings(folder)
    return recorded_utterance(recordings[int(rng.integers(len(recordings)))], folder)
