"""Conformal p-values, reference sets and the sf-reference-set command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sf_fairseq.eval import conformal, reference_set
from sf_fairseq.eval.verdict import INPUT_REASONS


def test_p_value_formula_with_ties():
    ref = [0.1, 0.2, 0.2, 0.5]
    # (1 + #{r <= s}) / (n + 1)
    assert conformal.conformal_p_value(0.05, ref) == pytest.approx(1 / 5)
    assert conformal.conformal_p_value(0.2, ref) == pytest.approx(4 / 5)  # ties count as <=
    assert conformal.conformal_p_value(0.9, ref) == pytest.approx(1.0)
    direct = [(1 + sum(r <= s for r in ref)) / 5 for s in (0.0, 0.1, 0.3)]
    assert conformal.conformal_p_values([0.0, 0.1, 0.3], ref).tolist() == pytest.approx(direct)


def test_p_value_refuses_empty_or_non_finite():
    with pytest.raises(ValueError):
        conformal.conformal_p_value(0.1, [])
    with pytest.raises(ValueError):
        conformal.conformal_p_value(float("nan"), [0.1])


def test_min_reference_size():
    assert conformal.min_reference_size(0.01) == 100  # 1/101 < 0.01 <= 1/100
    assert conformal.min_reference_size(0.05) == 20
    assert 1 / (conformal.min_reference_size(0.01) + 1) < 0.01
    assert 1 / conformal.min_reference_size(0.01) >= 0.01


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
def test_false_positive_rate_stays_below_alpha(alpha):
    """Held-out real scores exchangeable with the reference: the fraction with p < alpha is at
    most alpha, up to sampling error (3 binomial standard errors), over many reference draws."""
    rng = np.random.default_rng(0)
    n_ref, n_test, n_draws = 200, 500, 200
    rates = []
    for _ in range(n_draws):
        ref = rng.normal(0.6, 0.1, n_ref)
        test = rng.normal(0.6, 0.1, n_test)
        rates.append(np.mean(conformal.conformal_p_values(test, ref) < alpha))
    mean_rate = float(np.mean(rates))
    trials = n_test * n_draws
    assert mean_rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials)
    # and it is not vacuous: the rate is close to the bound floor(alpha (n+1)) / (n + 1) style
    assert mean_rate > alpha / 2
    # fakes (lower scores) are caught
    fakes = rng.normal(0.2, 0.1, n_test)
    assert np.mean(conformal.conformal_p_values(fakes, ref) < alpha) > 0.9


def test_guarantee_with_heavy_ties():
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(300):
        ref = rng.integers(0, 5, 150).astype(float)  # a discrete score: many ties
        test = rng.integers(0, 5, 200).astype(float)
        rates.append(np.mean(conformal.conformal_p_values(test, ref) < 0.05))
    assert np.mean(rates) <= 0.05


def _record(i, label=1, status="ok", score=0.5, **extra):
    return {"id": f"c{i}", "label": label, "status": status, "score": score, "score_speech": score,
            "reasons": ["uncalibrated"], "category": "real", **extra}


def test_build_reference_set_refuses_non_real_failed_and_inconclusive():
    records = [_record(i, score=0.1 * i) for i in range(5)]
    records += [_record(10, label=0), _record(11, label=None), _record(12, status="failed", score=None),
                {**_record(13), "score_speech": None}, {**_record(14), "reasons": ["too_little_speech"]}]
    ref = conformal.build_reference_set(records, "score_speech", blocking=INPUT_REASONS)
    assert ref.groups == {"all": pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])}
    assert ref.refused == {"not_real": 2, "not_ok": 1, "no_score_speech": 1, "inconclusive_input": 1}


def test_build_reference_set_groups_and_refuses_mixed_models():
    records = [_record(i, score=i / 10, language="en" if i % 2 else "fr") for i in range(6)]
    ref = conformal.build_reference_set(records, "score", group_by="language")
    assert sorted(ref.groups) == ["en", "fr"]
    assert ref.scores_for({"language": "en"}) == pytest.approx([0.1, 0.3, 0.5])
    assert ref.scores_for({"language": "de"}) is None
    mixed = [_record(0, provenance={"checkpoint_sha256": "a", "layer": None, "settings": {}}),
             _record(1, provenance={"checkpoint_sha256": "b", "layer": None, "settings": {}})]
    with pytest.raises(ValueError, match="different checkpoints"):
        conformal.build_reference_set(mixed)
    with pytest.raises(ValueError, match="no usable real records"):
        conformal.build_reference_set([_record(0, label=0)])


def test_reference_set_round_trip(tmp_path):
    prov = {"checkpoint_sha256": "x", "layer": 3, "settings": {"score": {"max_offset": 15}}}
    ref = conformal.build_reference_set([_record(i, score=i, provenance=prov) for i in range(3)],
                                        sources=["a.jsonl"])
    ref.save(tmp_path / "ref.json")
    back = conformal.ReferenceSet.load(tmp_path / "ref.json")
    assert back == ref
    assert back.model == prov
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a reference set"):
        conformal.ReferenceSet.load(tmp_path / "bad.json")


def test_reference_set_cli(tmp_path, capsys):
    lines = [_record(i, score=0.5 + i / 1000, category="real" if i < 150 else "other") for i in range(160)]
    lines += [_record(500, label=0), _record(501, status="failed", score=None)]
    lines.append({**_record(3), "score_speech": 0.99})  # a rerun: the last record of an id wins
    (tmp_path / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "ref.json"
    assert reference_set.main([str(tmp_path), "--out", str(out), "--group-by", "category"]) == 0
    ref = conformal.ReferenceSet.load(out)
    assert len(ref.groups["real"]) == 150 and len(ref.groups["other"]) == 10
    assert 0.99 in ref.groups["real"] and 0.503 not in ref.groups["real"]
    assert ref.refused == {"not_real": 1, "not_ok": 1}
    text = capsys.readouterr().out
    assert "group 'other': 10 real clips" in text and "too small for alpha=0.01" in text
    assert reference_set.main([str(tmp_path / "missing"), "--out", str(out)]) == 2
