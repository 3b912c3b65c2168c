"""espeak-ng speech with phoneme timings, and phonemes → viseme classes → mouth shapes."""

import numpy as np
import pytest

from sf_fairseq.preprocess.synthetic.speech import SAMPLE_RATE, Phoneme, Voice, make_sentence, speak
from sf_fairseq.preprocess.synthetic.visemes import (
    CLOSED,
    LIP_TEETH,
    OPEN,
    ROUNDED,
    SPREAD,
    mouth_track,
    viseme_of,
)


@pytest.fixture(scope="module")
def utterance():
    return speak("Bob made five pies by the blue map, see?", Voice("en-us", rate=160))


def test_audio_is_16k_int16_speech(utterance):
    assert utterance.audio.dtype == np.int16 and utterance.audio.ndim == 1
    assert 1.5 < utterance.duration < 5.0
    assert np.abs(utterance.audio).max() > 3000


def test_phoneme_timings_monotonic_and_within_audio(utterance):
    ph = utterance.phonemes
    assert len(ph) > 20
    starts = np.array([p.start for p in ph])
    ends = np.array([p.end for p in ph])
    assert np.all(ends > starts)
    assert np.all(np.diff(starts) > 0)
    assert np.all(starts[1:] >= ends[:-1] - 1e-9)  # no overlap
    assert starts[0] >= 0 and ends[-1] <= utterance.duration + 1e-9
    symbols = [p.symbol.lstrip("',") for p in ph]
    assert symbols.count("b") >= 3 and "m" in symbols and "f" in symbols


def test_pauses_are_quiet(utterance):
    # The comma/sentence pauses espeak reports carry (almost) no energy.
    audio = utterance.audio.astype(np.float64)
    rms = lambda p: np.sqrt(np.mean(audio[int(p.start * SAMPLE_RATE) : int(p.end * SAMPLE_RATE)] ** 2) + 1e-9)
    vowels = [rms(p) for p in utterance.phonemes if p.symbol.lstrip("'") in ("aI", "eI", "u:", "i:", "a")]
    pauses = [rms(p) for p in utterance.phonemes if p.symbol.startswith("_") and p.end - p.start > 0.03]
    assert pauses and vowels
    assert max(pauses) < 0.1 * np.median(vowels)


def test_voices_and_rates_change_the_speech():
    a = speak("Hello there.", Voice("en-us", rate=150, pitch=40))
    b = speak("Hello there.", Voice("en-us+f2", rate=150, pitch=70))
    c = speak("Hello there.", Voice("en-us", rate=220, pitch=40))
    assert not np.array_equal(a.audio[: len(b.audio)], b.audio[: len(a.audio)])
    assert c.duration < 0.85 * a.duration
    with pytest.raises(ValueError, match="no voice"):
        speak("Hello.", Voice("xx-nonexistent"))


def test_sentences_are_seeded_and_varied():
    rng = lambda: np.random.default_rng(7)
    assert make_sentence(rng()) == make_sentence(rng())
    r = np.random.default_rng(0)
    sentences = {make_sentence(r) for _ in range(50)}
    assert len(sentences) == 50
    assert all(4 <= len(s.split()) <= 16 for s in sentences)


def test_viseme_classes():
    for p in ("p", "b", "m", "'m"):
        assert viseme_of(p) is CLOSED and CLOSED.open == 0.0
    assert viseme_of("f") is LIP_TEETH and viseme_of("v") is LIP_TEETH
    assert viseme_of("'u:") is ROUNDED and viseme_of("w") is ROUNDED
    assert viseme_of("i:") is SPREAD and viseme_of("'a") is OPEN
    assert viseme_of("aU") == (OPEN, ROUNDED)
    assert CLOSED.dominance > max(OPEN.dominance, SPREAD.dominance)


def test_mouth_track_closes_on_bilabials_and_opens_on_vowels():
    # "a m a" at a fast rate: the mouth still closes for m (strong dominance) and opens for a.
    ph = [Phoneme("_", 0.0, 0.2), Phoneme("'a", 0.2, 0.4), Phoneme("m", 0.4, 0.48),
          Phoneme("a", 0.48, 0.7), Phoneme("_", 0.7, 1.0)]
    track = mouth_track(ph, n_frames=30, offset=0.2)  # the phonemes start 0.2 s into the clip
    assert len(track) == 30
    frame = lambda t: int(t * 25)
    assert track.open[frame(0.2 + 0.44)] < 0.15  # during m
    assert track.open[frame(0.2 + 0.3)] > 0.6  # during the first a
    assert track.open[frame(0.2 + 0.6)] > 0.6
    assert track.open[0] < 0.05 and track.open[-1] < 0.05  # rest before and after
    assert np.all(np.abs(np.diff(track.open)) < 0.6)  # smooth, no jumps across the range


def test_mouth_track_of_real_speech(utterance):
    track = mouth_track(utterance.phonemes, n_frames=int(np.ceil(utterance.duration * 25)))
    closed = [p for p in utterance.phonemes if p.symbol.lstrip("'") in ("b", "m") and p.end - p.start > 0.05]
    assert closed
    for p in closed:
        assert track.open[int((p.start + p.end) / 2 * 25)] < 0.25
    assert track.open.max() > 0.6


def test_speech_does_not_depend_on_earlier_utterances():
    voice = Voice("en-us+f2", rate=150)
    first = speak("Bob made five pies.", voice)
    speak("Something else entirely, spoken slowly.", Voice("en", rate=120, pitch=80))
    again = speak("Bob made five pies.", voice)
    assert np.array_equal(first.audio, again.audio) and first.phonemes == again.phonemes
