"""The paper-style table of a benchmark run: AUC overall and per category with bootstrap
intervals, AP and EER, what was left out and why, and localisation AP/AR where it applies.

Metrics come from :mod:`sf_fairseq.eval.metrics` (labels 1 = real; score higher = more likely
real; AUC = ``P(score(real) > score(fake))``; AP of detecting fakes; stratified bootstrap). A
category's row compares its fakes with *all* real items of the run, as SpeechForensics' and
FakeAVCeleb's per-category tables do.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .. import metrics
from ..results import OK
from .items import BenchmarkItem, ItemProblem

# What each run's numbers can be compared with (shown under the table).
COMPARABLE = {
    "speechforensics": (
        "SpeechForensics' README AUC on its own test lists (FaceForensics++ 97.6, FakeAVCeleb 99.0, "
        "KoDF 91.7 without fsgan) with large_vox_iter5.pt: the same items, labels and score rule."
    ),
    "fakeavceleb": (
        "Every row of meta_data.csv (FakeAVCeleb has no official split). SpeechForensics' 99.0 is on "
        "the 21,544 clips of its list (the same clips, its ids are ours); zero-shot peers (AVAD, FACTOR, "
        "AVH-Align) report AUC on comparable all-clip protocols."
    ),
    "ffpp": (
        "The official test split (140 originals, 140 fakes per method). SpeechForensics' 97.6 is on its "
        "own list (500 real + 500 per method, 'real/videos' + 'fake/<method>/videos'); run --dataset "
        "speechforensics on that list for the exact set. Per-method rows compare with per-manipulation "
        "AUC tables (e.g. SpeechForensics Deepfakes 99.4)."
    ),
    "kodf": (
        "The metadata split given (validation by default), fsgan left out as SpeechForensics does. "
        "SpeechForensics' 91.7 is on the 4,832 clips of its list (1000 original, 1000 audio-driven, "
        "1000 dffs, 1000 dfl, 832 fo)."
    ),
    "avdeepfake1m": (
        "Video-level AUC as the official SDK's auc() computes it (fake iff fake_segments is non-empty); "
        "published real-only numbers on AV-Deepfake1M: SpeechForensics 68.1, AV-HuBERT A+V sync 87.3 "
        "(SSR-DFD table). Localisation AP@IoU and AR@N as the SDK's ap_ar_1d (fps 1, IoU 0.5:0.05:0.95 "
        "for AR); README baselines: BA-TFD+ AP@0.5 44.42, UMMAFormer 51.64."
    ),
    "lavdf": (
        "Video-level AUC on the split given (test by default); localisation AP@{0.5, 0.75, 0.95} and "
        "AR@{100, 50, 20, 10} (the LAV-DF README's columns; BA-TFD+ AP@0.5 96.30) computed with the "
        "AV-Deepfake1M SDK's definitions on fake_periods in seconds."
    ),
}


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _scores(items: Sequence[BenchmarkItem], records: Mapping[str, dict]) -> tuple[list[BenchmarkItem], np.ndarray]:
    used = [it for it in items if it.label is not None and records.get(it.id, {}).get("status") == OK]
    return used, np.array([records[it.id]["score"] for it in used], dtype=np.float64)


def detection_metrics(labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """AUC, AP, EER with 95% bootstrap intervals, or a note when a class is missing."""
    n_real, n_fake = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    out: dict[str, Any] = {"n_real": n_real, "n_fake": n_fake}
    if n_real == 0 or n_fake == 0:
        out["note"] = "needs real and fake items"
        return out
    out["auc"] = metrics.roc_auc(labels, scores)
    out["ap"] = metrics.average_precision(labels, scores)
    out["eer"], out["eer_threshold"] = metrics.equal_error_rate(labels, scores)
    if n_boot > 0:
        ci = metrics.bootstrap_intervals(labels, scores, n_boot=n_boot, seed=seed)
        out["auc_ci"], out["ap_ci"], out["eer_ci"] = ci["auc"], ci["ap"], ci["eer"]
    return out


def summarise(
    dataset: str,
    items: Sequence[BenchmarkItem],
    problems: Sequence[ItemProblem],
    records: Mapping[str, dict],
    n_boot: int = 1000,
    seed: int = 0,
    localisation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the report shows, JSON-ready."""
    used, scores = _scores(items, records)
    labels = np.array([it.label for it in used], dtype=np.int64)
    overall = detection_metrics(labels, scores, n_boot, seed)
    per_category: dict[str, Any] = {}
    real = labels == 1
    for category in sorted({it.category for it in used if it.label == 0}):
        keep = real | np.array([it.label == 0 and it.category == category for it in used], dtype=bool)
        per_category[category] = detection_metrics(labels[keep], scores[keep], n_boot, seed)
    not_scored: dict[str, int] = {}
    for it in items:
        record = records.get(it.id)
        if it.label is None or (record is not None and record.get("status") == OK):
            continue
        reason = "not scored yet" if record is None else (record.get("error_type") or "failed")
        not_scored[reason] = not_scored.get(reason, 0) + 1
    left_out: dict[str, int] = {}
    for problem in problems:
        left_out[problem.reason] = left_out.get(problem.reason, 0) + 1
    return {
        "dataset": dataset,
        "n_items": len(items),
        "n_used": len(used),
        "overall": overall,
        "per_category": per_category,
        "not_scored": not_scored,
        "left_out": left_out,
        "localisation": dict(localisation) if localisation else None,
        "comparable_to": COMPARABLE.get(dataset, ""),
    }


def _ci(row: Mapping[str, Any], key: str) -> str:
    ci = row.get(f"{key}_ci")
    return "" if ci is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def markdown(summary: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
    """The report as Markdown."""
    lines = [f"# Benchmark: {summary['dataset']}", ""]
    for key, value in (header or {}).items():
        lines.append(f"- {key}: {value}")
    lines += [
        f"- items: {summary['n_items']} to score, {summary['n_used']} scored with a label",
        "",
        "| rows | n real | n fake | AUC | AUC 95% CI | AP | EER |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [("all", summary["overall"])] + list(summary["per_category"].items())
    for name, row in rows:
        lines.append(
            f"| {name} | {row['n_real']} | {row['n_fake']} | {_fmt(row.get('auc'))} | {_ci(row, 'auc')} | "
            f"{_fmt(row.get('ap'))} | {_fmt(row.get('eer'))} |"
        )
    loc = summary.get("localisation")
    if loc:
        lines += ["", f"Temporal localisation ({loc['n_files']} files, SDK definitions):", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| AP@{t} | {_fmt(v)} |" for t, v in loc["ap"].items()]
        lines += [f"| AR@{n} | {_fmt(v)} |" for n, v in loc["ar"].items()]
        lines.append(f"| score (0.5 mean AP + 0.5 mean AR) | {_fmt(loc['score'])} |")
    if summary["not_scored"] or summary["left_out"]:
        lines += ["", "Not in the table:", ""]
        lines += [f"- {n} item(s) not scored: {reason}" for reason, n in summary["not_scored"].items()]
        lines += [f"- {n} metadata entr(y/ies) without an item: {reason}" for reason, n in summary["left_out"].items()]
    lines += ["", f"Comparable to: {summary['comparable_to']}", ""]
    return "\n".join(lines)
