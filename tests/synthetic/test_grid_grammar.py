"""The GRID sentence grammar and the corpus's ``grammar`` option: GRID sentences, fakes drawn from
the same grammar, the true text of each stream in the metadata, and resume refusing another grammar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sf_fairseq.data.rates import FPS
from sf_fairseq.preprocess.synthetic import corpus, grid
from sf_fairseq.preprocess.synthetic.clips import new_utterance, plan_real
from sf_fairseq.preprocess.synthetic.corpus_engine import CorpusError, CorpusJob, generate
from sf_fairseq.preprocess.synthetic.fakes import make_fake


def test_grid_sentences_have_one_word_per_slot_in_order_and_are_seeded():
    sentences = [grid.make_sentence(np.random.default_rng([5, i])) for i in range(200)]
    assert all(grid.is_grid_sentence(s) for s in sentences)
    assert sentences == [grid.make_sentence(np.random.default_rng([5, i])) for i in range(200)]
    assert len(set(sentences)) > 190
    # every word of every slot turns up, in its own position only
    for position, slot in enumerate(grid.SLOTS):
        assert {s.split()[position] for s in sentences} <= set(slot)
    assert {s.split()[3] for s in sentences} >= set("bcdefg")
    assert len(grid.VOCABULARY) == 4 + 4 + 4 + 25 + 10 + 4 and "w" not in grid.VOCABULARY


def test_is_grid_sentence_and_spoken_form():
    assert grid.is_grid_sentence("set blue by f two now")
    assert not grid.is_grid_sentence("blue set by f two now")  # slot order
    assert not grid.is_grid_sentence("set blue by w two now")  # no w
    assert not grid.is_grid_sentence("set blue by f two")
    assert grid.spoken_form("lay red at a nine soon") == "lay red at ay nine soon"


def test_grid_utterance_text_is_the_written_sentence():
    utterance = new_utterance(np.random.default_rng(3), grammar="grid")
    assert grid.is_grid_sentence(utterance.text)
    assert utterance.duration > 0.8 and utterance.phonemes
    with pytest.raises(ValueError, match="unknown grammar"):
        new_utterance(np.random.default_rng(3), grammar="lrs3")


def test_grid_fakes_say_other_grid_sentences():
    rng = np.random.default_rng(7)
    real = plan_real(rng, (128, 128), new_utterance(rng, grammar="grid"))
    dubbed = make_fake(real, "dubbed", np.random.default_rng(8), grammar="grid")
    assert grid.is_grid_sentence(dubbed.meta["audio_text"]) and dubbed.meta["audio_text"] != real.utterance.text
    other = make_fake(real, "lipsync_other", np.random.default_rng(9), grammar="grid")
    assert grid.is_grid_sentence(other.meta["mouth_text"]) and other.meta["mouth_text"] != real.utterance.text


def _first_draw_cut(real, seed: int, grammar: str) -> tuple[str, float]:
    """The sentence a dubbed fake drawn with ``seed`` tries first, and how many seconds of its
    speech would run past the end of ``real``'s clip."""
    first = new_utterance(np.random.default_rng(seed), grammar=grammar)
    speech_end = max(p.end for p in first.phonemes if not p.symbol.startswith("_"))
    return first.text, real.lead + speech_end - real.n_frames / FPS


def _seed_of_first_dub(real, grammar: str, cut_off: bool) -> tuple[int, str, float]:
    """A seed whose first dub sentence runs past the clip's end by over 0.05 s (``cut_off``) or
    ends within it, with that sentence and its overrun."""
    for seed in range(200):
        text, cut = _first_draw_cut(real, seed, grammar)
        if (cut > 0.05) if cut_off else (cut < 0):
            return seed, text, cut
    raise AssertionError(f"no such seed among 200 ({grammar}, cut_off={cut_off})")


@pytest.mark.parametrize("grammar, real_seed", [("grid", 3), ("free", 11)])  # short real clips
def test_dubbed_speech_past_the_clip_end(grammar, real_seed):
    # A dub longer than the clip: GRID clips (transcribed against the whole sentence) draw another
    # sentence that fits; free-grammar clips keep it, cut by the clip's end, and say how much.
    rng = np.random.default_rng(real_seed)
    real = plan_real(rng, (64, 64), new_utterance(rng, grammar=grammar))
    seed, text, cut = _seed_of_first_dub(real, grammar, cut_off=True)
    dubbed = make_fake(real, "dubbed", np.random.default_rng(seed), grammar=grammar)
    assert len(dubbed.audio) == len(real.audio)
    if grammar == "grid":
        assert dubbed.meta["audio_cut_seconds"] == 0.0
        assert dubbed.meta["audio_text"] != text and grid.is_grid_sentence(dubbed.meta["audio_text"])
    else:
        assert dubbed.meta["audio_text"] == text
        assert dubbed.meta["audio_cut_seconds"] == pytest.approx(cut, abs=1e-3)
    # a dub that fits is kept as drawn, and nothing is cut
    seed, text, cut = _seed_of_first_dub(real, grammar, cut_off=False)
    dubbed = make_fake(real, "dubbed", np.random.default_rng(seed), grammar=grammar)
    assert dubbed.meta["audio_text"] == text and dubbed.meta["audio_cut_seconds"] == 0.0


def test_grid_corpus_metadata_names_each_streams_text(tmp_path):
    out = tmp_path / "c"
    categories = ("real", "dubbed", "lipsync_other", "frozen_mouth")
    # recorded_fraction is left at its default: a GRID corpus ignores it (espeak-ng only)
    generate(CorpusJob(out, n_train=1, n_test=1, seed=2, size=(128, 128), quick=True, categories=categories,
                       grammar="grid"))
    records = {r["category"]: r for r in map(json.loads, (out / "test" / "metadata.jsonl").read_text().splitlines())}
    assert set(records) == set(categories)
    real = records["real"]
    assert grid.is_grid_sentence(real["text"]) and real["audio_text"] == real["mouth_text"] == real["text"]
    assert all(r["grammar"] == "grid" and r["speech"] == "espeak-ng" for r in records.values())
    dubbed = records["dubbed"]
    assert dubbed["mouth_text"] == real["text"] and grid.is_grid_sentence(dubbed["audio_text"])
    assert dubbed["audio_text"] != real["text"]
    other = records["lipsync_other"]
    assert other["audio_text"] == real["text"] and grid.is_grid_sentence(other["mouth_text"])
    assert other["mouth_text"] != real["text"]
    assert records["frozen_mouth"]["mouth_text"] is None and records["frozen_mouth"]["audio_text"] == real["text"]
    train = json.loads((out / "train" / "metadata.jsonl").read_text())
    assert grid.is_grid_sentence(train["text"])
    settings = json.loads((out / "corpus.json").read_text())
    assert settings["grammar"] == "grid" and settings["recorded_fraction"] == 0.0

    # the grammar is part of the settings a rerun must match
    with pytest.raises(CorpusError, match="grammar"):
        generate(CorpusJob(out, n_train=1, n_test=1, seed=2, size=(128, 128), quick=True, categories=categories))
    with pytest.raises(CorpusError, match="--grammar"):
        generate(CorpusJob(tmp_path / "d", grammar="lrs3"))


def test_free_corpus_metadata_also_names_each_streams_text(tmp_path):
    out = tmp_path / "c"
    generate(CorpusJob(out, n_train=0, n_test=1, seed=1, size=(128, 128), quick=True, recorded_fraction=0.0,
                       categories=("real", "dubbed")))
    records = {r["category"]: r for r in map(json.loads, (out / "test" / "metadata.jsonl").read_text().splitlines())}
    assert records["real"]["grammar"] == "free"
    assert records["dubbed"]["mouth_text"] == records["real"]["text"] != records["dubbed"]["audio_text"]


def test_command_has_a_grammar_option(capsys):
    with pytest.raises(SystemExit):
        corpus.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--grammar {free,grid}" in text and "espeak-ng speech only" in text
