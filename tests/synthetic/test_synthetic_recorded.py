"""Recorded speech: shipped excerpts, their phone timings, the mouth they drive, and corpora
that mix them with espeak-ng speech."""

import json

import numpy as np
import pytest
import soundfile as sf

from sf_fairseq.preprocess.synthetic import corpus, corpus_engine
from sf_fairseq.preprocess.synthetic.recorded import (
    SPEECH_DIR,
    arpabet_to_espeak,
    load_recordings,
    recorded_utterance,
)
from sf_fairseq.preprocess.synthetic.speech import SAMPLE_RATE
from sf_fairseq.preprocess.synthetic.visemes import CLOSED, FPS, OPEN, MID, mouth_track, viseme_of

VOWELS = {"A:", "a", "aI", "aU", "E", "eI", "3:", "O:", "oU"}


def test_shipped_excerpts_are_small_public_domain_and_aligned():
    recordings = load_recordings()
    assert len(recordings) >= 4
    assert sum(p.stat().st_size for p in SPEECH_DIR.iterdir()) < 1_000_000
    assert "public domain" in (SPEECH_DIR / "README.md").read_text().lower()
    for r in recordings:
        assert "LibriVox" in r.source and "public domain" in r.licence
        u = recorded_utterance(r)
        assert u.audio.dtype == np.int16 and 2.0 < u.duration < 5.0
        starts = np.array([p.start for p in u.phonemes])
        ends = np.array([p.end for p in u.phonemes])
        # Monotonic, tiling the speech, inside the audio, at least one phone per word.
        assert np.all(ends > starts) and np.all(starts[1:] >= ends[:-1] - 1e-6)
        assert starts[0] >= 0 and ends[-1] <= u.duration + 1e-6 and ends[-1] > u.duration - 0.1
        assert sum(not p.symbol.startswith("_") for p in u.phonemes) >= len(r.text.split())
        # The alignment is real: aligned silences are much quieter than aligned vowels (measured
        # ratio 0.05-0.22; the highest is the tail of a final "z").
        def rms(symbols):
            pieces = [u.audio[int(p.start * SAMPLE_RATE):int(p.end * SAMPLE_RATE)].astype(float)
                      for p in u.phonemes if p.symbol in symbols and p.end - p.start >= 0.05]
            return np.sqrt(np.mean(np.concatenate(pieces) ** 2)) if pieces else None
        silence, vowels = rms({"_"}), rms(VOWELS)
        assert vowels is not None and vowels > 1000
        if silence is not None:
            assert silence < 0.3 * vowels


def test_arpabet_maps_to_known_visemes():
    assert arpabet_to_espeak("AA1") == "A:" and arpabet_to_espeak("SIL") == "_"
    assert arpabet_to_espeak("+NOISE+") == "_"
    assert viseme_of(arpabet_to_espeak("M")) is CLOSED and viseme_of(arpabet_to_espeak("AE")) is OPEN
    assert viseme_of(arpabet_to_espeak("ER")) is MID
    assert viseme_of(arpabet_to_espeak("AY"))[0] is OPEN  # diphthong: open, then spread


def test_mouth_opens_on_recorded_vowels_and_closes_on_bilabials():
    for r in load_recordings():
        u = recorded_utterance(r)
        track = mouth_track(u.phonemes, int(np.ceil(u.duration * FPS)))
        def at(symbols):
            return np.array([track.open[int((p.start + p.end) / 2 * FPS)]
                             for p in u.phonemes if p.symbol in symbols])
        vowels, bilabials = at(VOWELS), at({"p", "b", "m"})
        assert vowels.mean() > 0.35, r.file
        assert len(bilabials) and bilabials.mean() < 0.5 * vowels.mean(), r.file
        assert track.open[0] < 0.1 or u.phonemes[0].symbol != "_"


def test_recorded_choice_is_seeded_and_keeps_the_rest_of_the_clip():
    # seed 3: test clip 0 says a recording at fraction 0.2, training clip 2 does not at 0.5.
    a = corpus_engine.source_plan(3, "test", 0, (160, 160), True, recorded_fraction=0.2)
    b = corpus_engine.source_plan(3, "test", 0, (160, 160), True, recorded_fraction=0.2)
    synthetic = corpus_engine.source_plan(3, "test", 0, (160, 160), True, recorded_fraction=0.0)
    assert a.utterance.recording is not None and a.utterance.text == b.utterance.text
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.mouth.open, b.mouth.open)
    assert not hasattr(synthetic.utterance, "recording")
    assert a.augmentation == synthetic.augmentation and a.lead == synthetic.lead
    assert not hasattr(corpus_engine.source_plan(3, "train", 2, (160, 160), True, 0.5).utterance, "recording")


def test_corpus_with_recorded_speech(tmp_path):
    def generate(out):
        args = ["--out", str(out), "--n-train", "3", "--n-test", "1", "--seed", "3", "--quick",
                "--size", "128", "128", "--recorded-fraction", "0.5",
                "--categories", "real", "lipsync_other"]
        assert corpus.main(args) == 0
        train = [json.loads(line) for line in open(out / "train" / "metadata.jsonl")]
        test = [json.loads(line) for line in open(out / "test" / "metadata.jsonl")]
        return train, test

    train, test = generate(tmp_path / "a")
    # seed 3 at 0.5: train clips 0 and 1 and the test source say recordings, train clip 2 does not.
    assert [m["speech"] for m in train] == ["recorded", "recorded", "espeak-ng"]
    assert [m["speech"] for m in test] == ["recorded", "recorded"]
    for m in train[:2] + test:
        rec = m["recording"]
        assert rec["file"].endswith(".flac") and (SPEECH_DIR / rec["file"]).exists()
        assert "LibriVox" in rec["source"] and "public domain" in rec["licence"]
        assert m["voice"] is None and m["phonemes"]
    assert "recording" not in train[2] and train[2]["voice"]["name"]
    assert test[1]["category"] == "lipsync_other" and test[1]["mouth_text"] != test[1]["text"]

    # Deterministic: a second folder with the same settings has the same clips.
    train2, test2 = generate(tmp_path / "b")
    keys = ("text", "recording", "audio_sha256", "frames_sha256", "phonemes")
    assert [[m.get(k) for k in keys] for m in train + test] == [[m.get(k) for k in keys] for m in train2 + test2]

    # Another fraction in the same folder is refused.
    with pytest.raises(SystemExit):
        corpus.main(["--out", str(tmp_path / "a"), "--n-train", "3", "--n-test", "1", "--seed", "3",
                     "--quick", "--size", "128", "128", "--recorded-fraction", "0"])


def test_recorded_utterance_refuses_unreadable_or_wrong_format_files(tmp_path):
    recording = load_recordings()[0]
    with pytest.raises(ValueError, match="cannot read recorded speech"):
        recorded_utterance(recording, tmp_path)  # no file there
    sf.write(tmp_path / recording.file, np.zeros((8000, 2), np.int16), 16000)
    with pytest.raises(ValueError, match=f"{recording.file}.*expected mono 16000 Hz"):
        recorded_utterance(recording, tmp_path)
