"""The GRID sentence grammar and the corpus's ``grammar`` option: GRID sentences, fakes drawn from
the same grammar, the true text of each stream in the metadata, and resume refusing another grammar."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
