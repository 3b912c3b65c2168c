"""The synthetic corpus generator called as a function: CorpusJob -> CorpusSummary, and
CorpusError where sf-synthetic-corpus exits with a message."""

from __future__ import annotations

import pytest

from sf_fairseq.preprocess.synthetic import corpus
from sf_fairseq.preprocess.synthetic.corpus_engine import CorpusError, CorpusJob, generate


def test_generate_gives_a_summary_and_resumes(tmp_path):
    job = CorpusJob(tmp_path / "c", n_train=1, n_test=0, seed=4, size=(128, 128), quick=True, recorded_fraction=0.0)
    assert generate(job) == generate(job)  # the rerun renders nothing and lists the same clips
    summary = generate(job)
    assert (summary.out, summary.n_train, summary.n_test) == (tmp_path / "c", 1, 0)
    assert (tmp_path / "c" / "train" / "train_list.txt").read_text() == "real/t00000.mp4 1\n"


def test_bad_options_and_other_settings_are_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="--workers >= 1"):
        generate(CorpusJob(tmp_path / "c", workers=0))
    with pytest.raises(CorpusError, match="--size must be at least 128"):
        generate(CorpusJob(tmp_path / "c", size=(64, 128)))
    generate(CorpusJob(tmp_path / "c", n_train=0, n_test=0, seed=1))
    with pytest.raises(CorpusError, match="generated with"):
        generate(CorpusJob(tmp_path / "c", n_train=0, n_test=0, seed=2))
    # the command says the same and exits
    with pytest.raises(SystemExit, match="generated with"):
        corpus.main(["--out", str(tmp_path / "c"), "--n-train", "0", "--n-test", "0", "--seed", "2"])
