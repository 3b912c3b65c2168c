"""Detection metrics for forgery scores, bootstrap intervals, and threshold calibration.

Conventions: labels are 1 = real, 0 = fake; a *higher* score means *more likely real*; a clip is
called fake when its score is below the threshold. Hence:

* AUC is ``P(score(real) > score(fake))`` (ties count half) - SpeechForensics' number (real as
  the positive class; the same value as fakes-positive with negated scores).
* AP is the average precision of *detecting fakes* (fakes positive, ranked by ``-score``), the
  usual deepfake-detection reading.
* A false positive is a real clip called fake; EER is where that rate equals the rate of fakes
  called real.

Bootstrap intervals resample reals and fakes separately (stratified, so both classes are in
every replicate) with a seeded generator, and report the 2.5 and 97.5 percentiles.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sf_fairseq.resume import atomic_write_text


def _split(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.shape[0]} labels for {scores.shape[0]} scores")
    real, fake = scores[labels == 1], scores[labels == 0]
    if real.size == 0 or fake.size == 0:
        raise ValueError(f"need real and fake items, got {real.size} real and {fake.size} fake")
    return real, fake


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, tied values taking their average rank (scipy's
    ``rankdata(method="average")``; numpy only, so reports start without scipy)."""
    order = np.argsort(x, axis=-1, kind="mergesort")
    ordered = np.take_along_axis(x, order, axis=-1)
    n = x.shape[-1]
    index = np.broadcast_to(np.arange(n), x.shape)
    first = np.ones(x.shape, dtype=bool)  # first element of a run of equal values
    first[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    last = np.ones(x.shape, dtype=bool)
    last[..., :-1] = first[..., 1:]
    start = np.maximum.accumulate(np.where(first, index, 0), axis=-1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, index, n - 1), -1), axis=-1), -1)
    ranks = np.empty(x.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=-1)
    return ranks


def _auc_rows(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each row: ``real [R, n_real]``, ``fake [R, n_fake]`` -> ``[R]``."""
    n_real, n_fake = real.shape[1], fake.shape[1]
    ranks = _average_ranks(np.concatenate([real, fake], axis=1))
    rank_sum = ranks[:, :n_real].sum(axis=1)
    return (rank_sum - n_real * (n_real + 1) / 2.0) / (n_real * n_fake)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """``P(score(real) > score(fake)) + P(tie) / 2``."""
    real, fake = _split(labels, scores)
    return float(_auc_rows(real[None], fake[None])[0])


def _counts_by_threshold(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(false positives, true positives, threshold)`` when calling positive every score >= each
    distinct score, from the highest down (sklearn's binary classification curve)."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, positive = scores[order], positive[order]
    at = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # last index of each distinct score
    tps = np.cumsum(positive, dtype=np.float64)[at]
    return 1.0 + at - tps, tps, scores[at]


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` as ``sklearn.metrics.roc_curve`` (collinear points dropped,
    a first point (0, 0) at threshold +inf)."""
    fps, tps, thresholds = _counts_by_threshold(np.asarray(positive, dtype=bool), np.asarray(scores, np.float64))
    if fps.size > 2:
        corners = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[corners], tps[corners], thresholds[corners]
    fps, tps, thresholds = np.r_[0.0, fps], np.r_[0.0, tps], np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of detecting fakes (fakes positive, ranked by ``-score``):
    ``sum_n (R_n - R_n-1) P_n`` over distinct thresholds, as ``sklearn.metrics.average_precision_score``."""
    _split(labels, scores)
    fps, tps, _ = _counts_by_threshold(np.asarray(labels) == 0, -np.asarray(scores, np.float64))
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)``: the rate where reals called fake equal fakes called real
    (linearly interpolated between ROC points), and the score threshold there."""
    _split(labels, scores)
    fpr_real, tpr_real, thresholds = roc_curve(np.asarray(labels) == 1, scores)
    # Calling "real" when score >= t: fakes called real = fpr_real, reals called fake = 1 - tpr.
    miss = 1.0 - tpr_real
    diff = fpr_real - miss  # increases along the curve
    j = int(np.searchsorted(diff, 0.0))
    if j == 0:
        return float(fpr_real[0]), float(thresholds[0])
    i = j - 1
    w = 0.0 if diff[j] == diff[i] else -diff[i] / (diff[j] - diff[i])
    eer = fpr_real[i] + w * (fpr_real[j] - fpr_real[i])
    t_i, t_j = thresholds[i], thresholds[j]
    threshold = t_j if not np.isfinite(t_i) else t_i + w * (t_j - t_i)
    return float(eer), float(threshold)


def accuracy_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, balanced accuracy, and the two error rates with ``real iff score >= threshold``."""
    real, fake = _split(labels, scores)
    real_called_fake = float(np.mean(real < threshold))
    fake_called_real = float(np.mean(fake >= threshold))
    n = real.size + fake.size
    return {
        "threshold": float(threshold),
        "accuracy": float((np.sum(real >= threshold) + np.sum(fake < threshold)) / n),
        "balanced_accuracy": 1.0 - (real_called_fake + fake_called_real) / 2.0,
        "real_called_fake": real_called_fake,
        "fake_called_real": fake_called_real,
    }


def bootstrap_intervals(
    labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0, chunk: int = 100
) -> dict[str, tuple[float, float]]:
    """95% stratified bootstrap intervals of AUC, AP and EER.

    AUC replicates are computed ``chunk`` at a time in one ranking call; AP and EER one
    replicate at a time.
    """
    real, fake = _split(labels, scores)
    rng = np.random.default_rng(seed)
    aucs, aps, eers = [], [], []
    lab = np.concatenate([np.ones(real.size, int), np.zeros(fake.size, int)])
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        r = real[rng.integers(0, real.size, size=(rows, real.size))]
        f = fake[rng.integers(0, fake.size, size=(rows, fake.size))]
        aucs.append(_auc_rows(r, f))
        for row in range(rows):
            s = np.concatenate([r[row], f[row]])
            aps.append(average_precision(lab, s))
            eers.append(equal_error_rate(lab, s)[0])
    out = {}
    for name, values in (("auc", np.concatenate(aucs)), ("ap", np.array(aps)), ("eer", np.array(eers))):
        lo, hi = np.percentile(values, [2.5, 97.5])
        out[name] = (float(lo), float(hi))
    return out


def per_category_auc(
    labels: np.ndarray, scores: np.ndarray, categories: list[str | None]
) -> dict[str, dict[str, float]]:
    """AUC of each fake category against all reals: ``{category: {"auc", "n"}}`` (fakes
    without a category are grouped as ``"unknown"``)."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    real = scores[labels == 1]
    cats = np.array([c if c is not None else "unknown" for c in categories], dtype=object)
    out = {}
    for cat in sorted(set(cats[labels == 0])):
        fake = scores[(labels == 0) & (cats == cat)]
        auc = float(_auc_rows(real[None], fake[None])[0]) if real.size else math.nan
        out[str(cat)] = {"auc": auc, "n": int(fake.size)}
    return out


@dataclass
class Calibration:
    """A decision threshold set on real clips only, with where it came from.

    ``verdict(score)`` is ``"fake"`` when ``score < threshold``, else ``"real"``; on the real
    clips it was set on, at most ``target_fpr`` of them are called fake.
    """

    threshold: float
    target_fpr: float
    achieved_fpr: float
    n_real: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def verdict(self, score: float) -> str:
        return "fake" if score < self.threshold else "real"

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Calibration":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"cannot read calibration file {os.fspath(path)!r}: {err}") from err


def calibrate_threshold(
    real_scores: np.ndarray, target_fpr: float = 0.01, **provenance: Any
) -> Calibration:
    """Threshold calling at most ``target_fpr`` of ``real_scores`` fake.

    The threshold is the ``floor(target_fpr * n)``-th smallest real score (0-based), so fewer
    than that many reals lie strictly below it. With fewer than ``1 / target_fpr`` reals the
    threshold is the smallest real score (no real called fake) and the target is not really
    resolved; ``provenance`` records ``n_real`` so a reader can judge. Extra keyword arguments
    (checkpoint, layer, list, ...) are stored as provenance, with the date added.
    """
    real = np.sort(np.asarray(real_scores, dtype=np.float64))
    if real.size == 0:
        raise ValueError("no real scores to calibrate on")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    threshold = float(real[int(math.floor(target_fpr * real.size))])
    provenance = {**provenance, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return Calibration(
        threshold=threshold,
        target_fpr=float(target_fpr),
        achieved_fpr=float(np.mean(real < threshold)),
        n_real=int(real.size),
        provenance=provenance,
    )
