from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sf_fairseq.eval import metrics as m


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200, int), np.zeros(300, int)]
    scores = np.r_[rng.normal(1, 1, 200), rng.normal(0, 1, 300)].round(1)  # with ties
    return labels, scores


def test_auc_and_ap_agree_with_sklearn(data) -> None:
    labels, scores = data
    assert m.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m.average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels == 0, -scores), abs=1e-12
    )


def test_eer_on_a_hand_made_case() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.2, 0.1, 0.05])
    eer, thr = m.equal_error_rate(labels, scores)
    # At t in (0.3, 0.6]: one real of four below, one fake of four at/above -> 25% both.
    assert eer == pytest.approx(0.25)
    acc = m.accuracy_at(labels, scores, thr)
    assert acc["real_called_fake"] == pytest.approx(0.25) and acc["fake_called_real"] == pytest.approx(0.25)
    perfect = m.equal_error_rate(np.array([1, 0]), np.array([1.0, 0.0]))
    assert perfect[0] == 0.0


def test_accuracy_at_threshold() -> None:
    acc = m.accuracy_at(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1, 0.2]), 0.5)
    assert acc["accuracy"] == pytest.approx(3 / 5)
    assert acc["real_called_fake"] == 0.5 and acc["fake_called_real"] == pytest.approx(1 / 3)


def test_bootstrap_is_seeded_and_brackets_the_estimate(data) -> None:
    labels, scores = data
    a = m.bootstrap_intervals(labels, scores, n_boot=200, seed=3)
    b = m.bootstrap_intervals(labels, scores, n_boot=200, seed=3)
    assert a == b
    assert a["auc"][0] < m.roc_auc(labels, scores) < a["auc"][1]
    assert a["eer"][0] < m.equal_error_rate(labels, scores)[0] < a["eer"][1]
    assert 0.02 < a["auc"][1] - a["auc"][0] < 0.2


def test_per_category_auc_uses_all_reals() -> None:
    labels = np.array([1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.5, 0.1, 0.2, 0.95, 0.6])
    cats = ["r", "r", "A", "A", "B", None]
    out = m.per_category_auc(labels, scores, cats)
    assert out == {"A": {"auc": 1.0, "n": 2}, "B": {"auc": 0.0, "n": 1}, "unknown": {"auc": 0.5, "n": 1}}


def test_metrics_need_both_classes() -> None:
    with pytest.raises(ValueError, match="0 fake"):
        m.roc_auc(np.array([1, 1]), np.array([0.1, 0.2]))


def test_calibration_hits_the_target_rate_and_round_trips(tmp_path: Path) -> None:
    real = np.random.default_rng(1).normal(size=1000)
    cal = m.calibrate_threshold(real, 0.01, checkpoint="c.pt", layer=None, n=1000)
    assert cal.achieved_fpr <= 0.01 and cal.achieved_fpr == pytest.approx(0.01, abs=1e-3)
    assert np.sum(real < cal.threshold) == 10
    assert cal.verdict(cal.threshold) == "real" and cal.verdict(cal.threshold - 1e-9) == "fake"
    assert cal.provenance["checkpoint"] == "c.pt" and "date" in cal.provenance
    cal.save(tmp_path / "cal.json")
    assert m.Calibration.load(tmp_path / "cal.json") == cal
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        m.Calibration.load(tmp_path / "bad.json")


@pytest.mark.parametrize("seed", range(5))
def test_numpy_metrics_equal_scipy_and_sklearn(seed: int) -> None:
    # The report's metrics are numpy-only (sf-report starts without scipy/sklearn); they must
    # equal the libraries' on ties, repeated scores and unbalanced classes.
    from scipy.stats import rankdata
    from sklearn.metrics import average_precision_score, roc_curve

    rng = np.random.default_rng(seed)
    n_real, n_fake = int(rng.integers(1, 40)), int(rng.integers(1, 60))
    labels = np.r_[np.ones(n_real, int), np.zeros(n_fake, int)]
    scores = np.round(rng.normal(0.5, 0.2, labels.size), 1)  # rounded: many ties
    assert np.array_equal(m._average_ranks(np.stack([scores, scores[::-1]])),
                          rankdata(np.stack([scores, scores[::-1]]), axis=1))
    assert m.average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels == 0, -scores), abs=1e-12)
    for ours, theirs in zip(m.roc_curve(labels == 1, scores), roc_curve(labels == 1, scores)):
        np.testing.assert_allclose(ours, theirs, atol=1e-12)
