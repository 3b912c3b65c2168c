"""Metrics report from score records: ``report.json``, ``report.md``, ``roc.png``, ``hist.png``.

Only records with ``status == "ok"`` and a known label enter the metrics; every other record is
counted under a reason (``failed: <error type>``, ``no label``) that the report states. Metrics
(see :mod:`.metrics`): AUC, AP, EER and its threshold, accuracy at the EER threshold and at a
given or calibrated threshold, per-category AUC (each fake category against all reals), and
bootstrap 95% intervals. Plots use matplotlib's Agg backend (no display needed).

When records carry lips-only/audio-only transcripts (``score_batch --transcribe``), the report
adds a ``transcripts`` section: the mean word and character disagreement per category, and the
AUC of the word disagreement as a detector (higher disagreement = more likely fake) next to the
similarity score's AUC on the same items.

When records carry the verdict fields (:mod:`.verdict`, ``sf-score-batch``), the report adds
``speech_gated``: the AUC of the speech-gated score ``score_speech`` (with its 95% bootstrap
interval and per fake category) beside the paper's score's AUC on the same items; records
whose ``score_speech`` is None (no speech detected) are left out of it and counted
(``n_no_speech``). And ``verdicts``: per category, how many records are real, fake and
inconclusive and how often each reason code occurs (every record with a verdict counts,
including inputs that could not be scored for a known reason such as no face).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from sf_fairseq.resume import atomic_write_text

from . import metrics as m
from sf_fairseq.records import ABSENT, ScoreRecord, Transcripts

from .verdict import FAKE, INCONCLUSIVE, REAL, REASONS, reason_table

VERDICTS = (REAL, FAKE, INCONCLUSIVE)


def _select(records: Iterable[ScoreRecord]) -> tuple[list[ScoreRecord], Counter]:
    used, left_out = [], Counter()
    for r in records:
        if not r.ok or r.score is None:
            left_out[f"failed: {r.error_type or 'unknown error'}"] += 1
        elif r.label not in (0, 1):
            left_out["no label"] += 1
        else:
            used.append(r)
    return used, left_out


def _category(record: ScoreRecord) -> str:
    return record.category or ("real" if record.label == 1 else "unknown")


def transcript_metrics(used: list[ScoreRecord]) -> dict[str, Any] | None:
    """Transcript disagreement numbers over the used records (None when none has the field).

    Returns:
        ``{"n", "n_missing", "model", "per_category": {category: {"n", "real", "mean_word_disagreement",
        "mean_char_disagreement", "word_disagreement_auc"}}, "word_disagreement_auc",
        "score_auc_same_items", "note"?}``; the AUCs are None unless real and fake items were
        transcribed (a fake category's AUC is against all transcribed reals).
    """
    if all(r.transcripts is ABSENT for r in used):
        return None
    with_t = [r for r in used if isinstance(r.transcripts, Transcripts) and r.transcripts.ok]
    labels = np.array([r.label for r in with_t], dtype=int)
    word = np.array([r.transcripts.word_disagreement for r in with_t], dtype=np.float64)
    char = np.array([r.transcripts.char_disagreement for r in with_t], dtype=np.float64)
    cats = np.array([_category(r) for r in with_t], dtype=object)
    both = bool(np.any(labels == 1) and np.any(labels == 0))
    # Detector direction: more disagreement = more likely fake, so rank reals by -disagreement.
    cat_auc = m.per_category_auc(labels, -word, list(cats)) if both else {}
    per_category = {}
    for cat in sorted(set(cats)):
        sel = cats == cat
        per_category[str(cat)] = {
            "n": int(sel.sum()),
            "real": bool(np.all(labels[sel] == 1)),
            "mean_word_disagreement": float(word[sel].mean()),
            "mean_char_disagreement": float(char[sel].mean()),
            "word_disagreement_auc": cat_auc.get(str(cat), {}).get("auc"),
        }
    models = sorted({str(r.transcripts.model) for r in with_t})
    out: dict[str, Any] = {
        "n": len(with_t),
        "n_missing": len(used) - len(with_t),
        "model": models[0] if len(models) == 1 else models,
        "per_category": per_category,
        "word_disagreement_auc": m.roc_auc(labels, -word) if both else None,
        "score_auc_same_items": m.roc_auc(labels, np.array([r.score for r in with_t])) if both else None,
    }
    if not both:
        out["note"] = "AUCs need transcribed real and fake items"
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def gated_metrics(used: list[ScoreRecord], n_boot: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """The speech-gated score's AUC beside the paper's, over the used records that have a
    ``score_speech`` (None when no record carries the verdict fields: records of older runs).

    Returns:
        ``{"n", "n_no_speech", "auc_speech", "auc_speech_ci95", "auc_score_same_items",
        "per_category": {category: {"n", "auc_speech", "auc_score"}}, "note"?}``; AUCs are
        None unless real and fake items have speech.
    """
    # A scored record with verdict fields always has a verdict; one without comes from an older run.
    if all(r.verdict is None and r.score_speech is None for r in used):
        return None
    with_speech = [r for r in used if _finite(r.score_speech)]
    labels = np.array([r.label for r in with_speech], dtype=int)
    speech = np.array([r.score_speech for r in with_speech], dtype=np.float64)
    paper = np.array([r.score for r in with_speech], dtype=np.float64)
    out: dict[str, Any] = {"n": len(with_speech), "n_no_speech": len(used) - len(with_speech),
                           "auc_speech": None, "auc_speech_ci95": None, "auc_score_same_items": None,
                           "per_category": {}}
    if not (np.any(labels == 1) and np.any(labels == 0)):
        out["note"] = "the gated AUC needs real and fake items with speech"
        return out
    cats = [r.category for r in with_speech]
    gated_cat = m.per_category_auc(labels, speech, cats)
    paper_cat = m.per_category_auc(labels, paper, cats)
    out.update(
        auc_speech=m.roc_auc(labels, speech),
        auc_speech_ci95=m.bootstrap_intervals(labels, speech, n_boot=n_boot, seed=seed)["auc"] if n_boot > 0 else None,
        auc_score_same_items=m.roc_auc(labels, paper),
        per_category={c: {"n": v["n"], "auc_speech": v["auc"], "auc_score": paper_cat[c]["auc"]}
                      for c, v in gated_cat.items()},
    )
    return out


def verdict_counts(records: list[ScoreRecord]) -> dict[str, Any] | None:
    """Per category (as :func:`.verdict.reason_table`), the verdict counts and how often each
    reason code occurs, over the records with a verdict (None when none has one).

    Returns:
        ``{"n", "verdicts": {verdict: n}, "per_category": {category: {"n", "real", "fake",
        "inconclusive", "reasons": {code: n}}}}``.
    """
    judged = [r for r in records if r.verdict is not None]
    if not judged:
        return None
    per_category: dict[str, dict[str, Any]] = {}
    for r in judged:
        row = per_category.setdefault(str(r.category), {"n": 0, **dict.fromkeys(VERDICTS, 0), "reasons": {}})
        row["n"] += 1
        row[r.verdict] = row.get(r.verdict, 0) + 1
        for code in r.reasons or ():
            row["reasons"][code] = row["reasons"].get(code, 0) + 1
    return {"n": len(judged), "verdicts": dict(Counter(r.verdict for r in judged)),
            "per_category": dict(sorted(per_category.items()))}


def compute_report(
    records: Iterable[ScoreRecord | Mapping[str, Any]],
    threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All report numbers as a JSON-ready dict (metrics are None when a class is missing).
    ``records`` are score records (mappings are read with :meth:`ScoreRecord.from_dict`)."""
    records = [ScoreRecord.coerce(r) for r in records]
    used, left_out = _select(records)
    labels = np.array([r.label for r in used], dtype=int)
    scores = np.array([r.score for r in used], dtype=np.float64)
    cats = [r.category for r in used]
    out: dict[str, Any] = {
        "n_records": len(records),
        "n_used": len(used),
        "n_left_out": sum(left_out.values()),
        "left_out": dict(sorted(left_out.items())),
        "n_real": int(np.sum(labels == 1)),
        "n_fake": int(np.sum(labels == 0)),
        "score_direction": "higher = more likely real; called fake when score < threshold",
    }
    transcripts = transcript_metrics(used)
    if transcripts is not None:
        out["transcripts"] = transcripts
    verdicts = verdict_counts(records)
    if verdicts is not None:
        out["verdicts"] = verdicts
    gated = gated_metrics(used, n_boot, seed)
    if gated is not None:
        out["speech_gated"] = gated
    if out["n_real"] == 0 or out["n_fake"] == 0:
        out["metrics"] = None
        out["metrics_note"] = (
            f"metrics need real and fake items; got {out['n_real']} real and {out['n_fake']} fake"
        )
        return out
    eer, eer_thr = m.equal_error_rate(labels, scores)
    ci = m.bootstrap_intervals(labels, scores, n_boot=n_boot, seed=seed) if n_boot > 0 else None
    metrics: dict[str, Any] = {
        "auc": m.roc_auc(labels, scores),
        "ap": m.average_precision(labels, scores),
        "eer": eer,
        "eer_threshold": eer_thr,
        "at_eer_threshold": m.accuracy_at(labels, scores, eer_thr),
        "ci95": ci,
        "bootstrap": {"n_boot": n_boot, "seed": seed} if ci else None,
        "per_category": m.per_category_auc(labels, scores, cats),
    }
    if threshold is not None:
        metrics["at_threshold"] = m.accuracy_at(labels, scores, threshold)
    out["metrics"] = metrics
    return out


def _plot(used: list[ScoreRecord], out_dir: Path, threshold: float | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.array([r.label for r in used], dtype=int)
    scores = np.array([r.score for r in used], dtype=np.float64)
    cats = np.array([r.category or "unknown" for r in used], dtype=object)
    fake_cats = sorted(set(cats[labels == 0]))
    real = scores[labels == 1]

    fig, ax = plt.subplots(figsize=(5, 5))
    groups = [("all fakes", labels == 0)] + [(c, (labels == 0) & (cats == c)) for c in fake_cats]
    for name, sel in groups if len(fake_cats) > 1 else groups[:1]:
        s = np.concatenate([real, scores[sel]])
        y = np.r_[np.ones(real.size), np.zeros(int(sel.sum()))]
        fpr, tpr, _ = m.roc_curve(y == 0, -s)  # fakes positive: fakes detected vs reals flagged
        auc = m.roc_auc(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f}, n={int(sel.sum())})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="reals called fake (FPR)", ylabel="fakes detected (TPR)", title="ROC, fakes vs all reals")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "roc.png", dpi=120)
    plt.close(fig)

    n = max(1, len(fake_cats))
    fig, axes = plt.subplots(n, 1, figsize=(6, 2.2 * n), squeeze=False)
    bins = np.histogram_bin_edges(scores, bins=40)
    for ax, cat in zip(axes[:, 0], fake_cats or ["(no fakes)"]):
        ax.hist(real, bins=bins, alpha=0.6, density=True, label=f"real (n={real.size})")
        fake = scores[(labels == 0) & (cats == cat)]
        if fake.size:
            ax.hist(fake, bins=bins, alpha=0.6, density=True, label=f"{cat} (n={fake.size})")
        if threshold is not None:
            ax.axvline(threshold, c="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("score (higher = more likely real)")
    fig.tight_layout()
    fig.savefig(out_dir / "hist.png", dpi=120)
    plt.close(fig)
    return ["roc.png", "hist.png"]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _transcripts_markdown(t: dict[str, Any] | None) -> list[str]:
    if t is None:
        return []
    lines = ["", "## Lips vs audio transcripts", "",
             f"Lips-only and audio-only transcripts from `{t['model']}`; disagreement = edit distance / "
             "length of the longer transcript (0 = same, 1 = nothing in common). "
             f"{t['n']} items transcribed, {t['n_missing']} without transcripts.", ""]
    if t.get("word_disagreement_auc") is not None:
        lines += ["| detector | AUC on the transcribed items |", "|---|---|",
                  f"| similarity score (higher = real) | {_fmt(t['score_auc_same_items'])} |",
                  f"| word disagreement (higher = fake) | {_fmt(t['word_disagreement_auc'])} |", ""]
    else:
        lines += [f"No AUC: {t['note']}.", ""]
    lines += ["| category | n | mean word disagreement | mean character disagreement | word disagreement AUC |",
              "|---|---|---|---|---|"]
    lines += [f"| {c}{' (real)' if v['real'] else ''} | {v['n']} | {_fmt(v['mean_word_disagreement'])} | "
              f"{_fmt(v['mean_char_disagreement'])} | {_fmt(v['word_disagreement_auc'])} |"
              for c, v in t["per_category"].items()]
    return lines


def _gated_markdown(rep: dict[str, Any]) -> list[str]:
    g = rep.get("speech_gated")
    if g is None:
        return []
    lines = ["", "## Speech-gated score", "",
             "`score_speech`: the paper's offset search averaged over speech frames only (voice activity "
             f"detection). {g['n']} items have speech; {g['n_no_speech']} items without detected speech "
             "(`score_speech` None) are left out of its AUC.", ""]
    if g["auc_speech"] is None:
        return lines + [f"No gated AUC: {g['note']}."]
    ci = g.get("auc_speech_ci95")
    paper_all = (rep.get("metrics") or {}).get("auc")
    lines += ["| score | AUC | items |", "|---|---|---|",
              f"| score (paper's rule) | {_fmt(paper_all)} | {rep['n_used']} |",
              f"| score (paper's rule), items with speech | {_fmt(g['auc_score_same_items'])} | {g['n']} |",
              f"| score_speech (speech only) | {_fmt(g['auc_speech'])}"
              + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "") + f" | {g['n']} |",
              "", "| fake category | n | AUC score_speech | AUC score (same items) |", "|---|---|---|---|"]
    lines += [f"| {c} | {v['n']} | {_fmt(v['auc_speech'])} | {_fmt(v['auc_score'])} |"
              for c, v in g["per_category"].items()]
    return lines


def _verdict_markdown(rep: dict[str, Any], records: list[ScoreRecord]) -> list[str]:
    v = rep.get("verdicts")
    if v is None:
        return []
    counts = ", ".join(f"{n} {name}" for name, n in sorted(v["verdicts"].items()))
    lines = ["", "## Verdicts and inconclusive reasons", "",
             f"{v['n']} records with a verdict: {counts}. Per category, the verdicts and how many records carry "
             f"each reason (an {INCONCLUSIVE} verdict has at least one input or calibration reason):", "",
             reason_table(records).rstrip("\n"), ""]
    present = sorted({c for row in v["per_category"].values() for c in row["reasons"]})
    lines += [f"- `{c}` ({REASONS[c][0]}): {REASONS[c][1]}" for c in present if c in REASONS]
    return lines


def _markdown(rep: dict[str, Any], title: str, records: list[ScoreRecord] | None = None) -> str:
    lines = [f"# {title}", ""]
    lines.append(
        f"{rep['n_records']} records; {rep['n_used']} used ({rep['n_real']} real, "
        f"{rep['n_fake']} fake); {rep['n_left_out']} left out."
    )
    if rep["left_out"]:
        lines += ["", "| left out because | items |", "|---|---|"]
        lines += [f"| {reason} | {n} |" for reason, n in rep["left_out"].items()]
    lines += ["", f"Score direction: {rep['score_direction']}.", ""]
    met = rep.get("metrics")
    if met is None:
        lines.append(f"No metrics: {rep['metrics_note']}.")
        lines += _verdict_markdown(rep, records or [])
        lines += _transcripts_markdown(rep.get("transcripts"))
        return "\n".join(lines) + "\n"
    ci = met.get("ci95") or {}

    def with_ci(name: str) -> str:
        lo_hi = ci.get(name)
        return _fmt(met[name]) + (f" [{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]" if lo_hi else "")

    lines += ["| metric | value (95% bootstrap interval) |", "|---|---|"]
    lines += [
        f"| AUC (real vs fake) | {with_ci('auc')} |",
        f"| AP (detecting fakes) | {with_ci('ap')} |",
        f"| EER | {with_ci('eer')} |",
        f"| EER threshold | {_fmt(met['eer_threshold'])} |",
        f"| accuracy at EER threshold | {_fmt(met['at_eer_threshold']['accuracy'])} |",
    ]
    if "at_threshold" in met:
        at = met["at_threshold"]
        lines += [
            f"| accuracy at threshold {at['threshold']:.4f} | {_fmt(at['accuracy'])} |",
            f"| reals called fake at it | {_fmt(at['real_called_fake'])} |",
            f"| fakes called real at it | {_fmt(at['fake_called_real'])} |",
        ]
    if met.get("bootstrap"):
        b = met["bootstrap"]
        lines += ["", f"Intervals: stratified bootstrap, {b['n_boot']} replicates, seed {b['seed']}."]
    lines += ["", "## Per fake category (against all reals)", "", "| category | n | AUC |", "|---|---|---|"]
    lines += [f"| {c} | {v['n']} | {_fmt(v['auc'])} |" for c, v in met["per_category"].items()]
    lines += _gated_markdown(rep)
    lines += _verdict_markdown(rep, records or [])
    lines += _transcripts_markdown(rep.get("transcripts"))
    lines += ["", "![ROC](roc.png)", "", "![Score histograms](hist.png)"]
    return "\n".join(lines) + "\n"


def write_report(
    records: Iterable[ScoreRecord | Mapping[str, Any]],
    out_dir: str | os.PathLike,
    threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    title: str = "Forgery score report",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute the report and write ``report.json``, ``report.md`` and the PNG plots (plots
    only when there are real and fake items). Returns the report dict. ``records`` as for
    :func:`compute_report`."""
    records = [ScoreRecord.coerce(r) for r in records]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = compute_report(records, threshold=threshold, n_boot=n_boot, seed=seed)
    if extra:
        rep["inputs"] = extra
    rep["plots"] = _plot(_select(records)[0], out_dir, threshold) if rep["metrics"] else []
    for name, text in (
        ("report.json", json.dumps(rep, indent=2) + "\n"),
        ("report.md", _markdown(rep, title, records)),
    ):
        atomic_write_text(out_dir / name, text)
    return rep
