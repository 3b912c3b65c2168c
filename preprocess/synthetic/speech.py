"""Synthetic speech with phoneme timings: espeak-ng through its C library.

The pip package ``espeakng-loader`` ships ``libespeak-ng.so`` and its data folder, so nothing
outside pip is needed. The library is driven through :mod:`ctypes` in synchronous mode with
phoneme events switched on: the synth callback receives PCM blocks plus events, and every
``espeakEVENT_PHONEME`` event carries the phoneme mnemonic and its position in the output (ms).
A phoneme lasts from its event to the next event, so timings tile the speech.

espeak-ng keeps global state (one voice, one callback), so :class:`Espeak` is a process-wide
singleton guarded by a lock. Output: 16 kHz mono int16 (resampled from espeak's 22,050 Hz with
a polyphase filter) and ``[Phoneme(symbol, start, end)]`` in seconds.

Sentences come from a seeded generator over a small built-in word list (grammatical
templates, so the speech sounds like speech) — see :func:`make_sentence`.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import threading
from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import resample_poly

from sf_fairseq.data.rates import SAMPLE_RATE

# espeak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the message
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    """One phoneme: espeak mnemonic (e.g. ``p``, ``aI``, ``_:`` for a pause), times in seconds."""

    symbol: str
    start: float
    end: float


@dataclass(frozen=True)
class Voice:
    """espeak-ng voice settings: ``name`` (``en-us``, ``en-gb+f3``, ...), words per minute,
    pitch (0–100, 50 = normal) and pitch range (0–100)."""

    name: str = "en-us"
    rate: int = 160
    pitch: int = 50
    pitch_range: int = 50


@dataclass
class Utterance:
    """Speech of one sentence.

    Attributes:
        text: the sentence.
        voice: the voice settings it was spoken with.
        audio: int16 samples ``[N]`` at 16 kHz, mono.
        phonemes: phoneme segments in time order, within ``[0, N / 16000]``.
    """

    text: str
    voice: Voice
    audio: np.ndarray
    phonemes: list[Phoneme]

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def metadata(self) -> dict:
        """JSON-ready description (text, voice, phoneme timings; no samples)."""
        return {
            "text": self.text,
            "voice": asdict(self.voice),
            "duration": round(self.duration, 4),
            "phonemes": [[p.symbol, round(p.start, 4), round(p.end, 4)] for p in self.phonemes],
        }


class Espeak:
    """The espeak-ng library, initialised once per process (use :meth:`instance`)."""

    _instance: "Espeak | None" = None
    _create_lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "synthetic speech needs the pip package espeakng-loader (pip install espeakng-loader)"
            ) from e
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data folder {data.decode()})")
        self.native_rate = int(rate)
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []
        self._callback = _CALLBACK(self._on_synth)  # kept referenced: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def instance(cls) -> "Espeak":
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = Espeak()
            return cls._instance

    def _on_synth(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0", 1)[0].decode("ascii", "replace")
                self._events.append((event.type, event.audio_position, name))
            elif event.type in (_EVENT_WORD, _EVENT_END, _EVENT_MSG_TERMINATED):
                self._events.append((event.type, event.audio_position, ""))
            i += 1
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: Voice = Voice()) -> tuple[np.ndarray, list[tuple[str, float]], int]:
        """Raw output: (int16 samples at :attr:`native_rate`, [(phoneme, start s)], end ms of
        the message).

        libespeak-ng keeps synthesis state in globals that no call resets (the waveform and
        its length drift with every earlier utterance in the process), so where the OS can
        fork, each utterance is synthesised in a forked child of this never-used library
        state: the same text and voice always give the same samples.
        """
        with self._lock:
            if not hasattr(os, "fork"):  # pragma: no cover - non-POSIX: history-dependent output
                return self._synthesize_here(text, voice)
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: synthesise, send, exit without running any parent cleanup
                code = 0
                try:
                    os.close(read_fd)
                    with os.fdopen(write_fd, "wb") as pipe:
                        try:
                            result = ("ok", self._synthesize_here(text, voice))
                        except Exception as e:  # sent to the parent, re-raised there
                            result = ("error", e)
                        pickle.dump(result, pipe)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(write_fd)
            with os.fdopen(read_fd, "rb") as pipe:
                payload = pipe.read()
            _, status = os.waitpid(pid, 0)
            if not payload or status != 0:
                raise RuntimeError(f"espeak-ng synthesis process failed (status {status}) for {text!r}")
            kind, value = pickle.loads(payload)
            if kind == "error":
                raise value
            return value

    def _synthesize_here(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[str, float]], int]:
        if self._lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
            raise ValueError(f"espeak-ng has no voice {voice.name!r}")
        for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch),
                             (_PARAM_RANGE, voice.pitch_range), (_PARAM_VOLUME, 100)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        encoded = text.encode("utf-8")
        status = self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0,
                                        _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        events = self._events
        phonemes = [(name, ms / 1000.0) for kind, ms, name in events if kind == _EVENT_PHONEME]
        end_ms = max((ms for _, ms, _ in events), default=0)
        return samples.astype(np.int16), phonemes, end_ms


def speak(text: str, voice: Voice = Voice()) -> Utterance:
    """Speak ``text`` with ``voice``: 16 kHz int16 audio and phoneme segments (seconds).

    Segments run from each phoneme event to the next (the last one to the end of the audio),
    are clipped to the audio, and zero-length ones are dropped; times are non-decreasing.
    """
    engine = Espeak.instance()
    native, events, _ = engine.synthesize(text, voice)
    audio = resample_poly(native.astype(np.float32), SAMPLE_RATE, engine.native_rate)
    audio = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
    duration = len(audio) / SAMPLE_RATE
    phonemes = []
    for (symbol, start), nxt in zip(events, events[1:] + [("", duration)]):
        start, end = min(start, duration), min(nxt[1], duration)
        if end > start:
            phonemes.append(Phoneme(symbol, start, end))
    return Utterance(text=text, voice=voice, audio=audio, phonemes=phonemes)


# Voices (espeak-ng voice + variant). Rates in words per minute and pitches are drawn per clip.
VOICES = ("en-us", "en", "en-us+m3", "en-us+f2", "en+f3", "en-us+m7", "en-gb-x-rp+f4", "en-029", "en-us-nyc+m1")
RATES = (135, 175)
PITCHES = (30, 70)

_NOUNS = (
    "cat dog house garden river mountain teacher doctor window table letter picture morning evening "
    "city village road car boat train friend brother sister mother father child kitchen market "
    "music paper book story apple orange coffee water bread forest ocean island bridge tower "
    "student farmer baker painter voice camera phone radio school office beach summer winter"
).split()
_ADJECTIVES = (
    "big small red blue green old young happy quiet loud bright dark warm cold fresh heavy "
    "little busy famous simple gentle clever lazy proud brave strange"
).split()
_VERBS = (
    "sees finds likes opens paints builds moves carries watches buys sells follows visits "
    "brings needs wants keeps misses loves helps"
).split()
_ADVERBS = "slowly quickly often never always gladly softly today again together".split()
_PLACES = "near the river|in the morning|by the window|at the market|on the bridge|after lunch|" \
          "before dinner|in the garden|under the table|behind the house".split("|")
_OPENERS = ("", "", "", "Yesterday", "Perhaps", "Every day", "Maybe", "Of course", "Now", "Then")


def make_sentence(rng: np.random.Generator, min_words: int = 6, max_words: int = 16) -> str:
    """A random English sentence from templates over a built-in word list (seeded)."""

    def pick(words) -> str:
        return str(words[int(rng.integers(len(words)))])

    def noun_phrase() -> str:
        article = pick(("the", "a", "my", "your", "this", "every", "one"))
        if rng.random() < 0.5:
            return f"{article} {pick(_ADJECTIVES)} {pick(_NOUNS)}"
        return f"{article} {pick(_NOUNS)}"

    while True:
        parts = [pick(_OPENERS), noun_phrase(), pick(_VERBS), noun_phrase()]
        if rng.random() < 0.5:
            parts.append(pick(_ADVERBS))
        if rng.random() < 0.6:
            parts.append(pick(_PLACES))
        if rng.random() < 0.4:
            parts += [pick(("and", "but", "while", "because")), noun_phrase(), pick(_VERBS), noun_phrase()]
        words = " ".join(p for p in parts if p).split()
        if min_words <= len(words) <= max_words:
            sentence = " ".join(words)
            return sentence[0].upper() + sentence[1:] + pick((".", ".", ".", "!", "?"))


def random_voice(rng: np.random.Generator) -> Voice:
    """A voice with a random name, rate, pitch and pitch range (seeded)."""
    return Voice(
        name=str(VOICES[int(rng.integers(len(VOICES)))]),
        rate=int(rng.integers(RATES[0], RATES[1] + 1)),
        pitch=int(rng.integers(PITCHES[0], PITCHES[1] + 1)),
        pitch_range=int(rng.integers(30, 81)),
    )
