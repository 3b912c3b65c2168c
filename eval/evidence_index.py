"""Batch index page: a sortable table of score records linking to their evidence packs.

One self-contained HTML file (inline PNGs, inline styles and a few lines of inline JavaScript to
sort the table by a click on a column header): the items (id, label, category, verdict, score,
speech-gated score, p-value, reasons, status, link to the item's evidence pack when there is
one), AUC with 95% bootstrap intervals overall and per fake category (each category against
all reals, :mod:`.metrics`), the ROC curves and the score histograms per category.

Example::

    sf-evidence-index scores/ --packs packs/ --out packs/index.html \
        --checkpoint base_lrs3_iter5.pt --worst 20 --pack clip_0042

links each record ``<id>`` to ``packs/<id>.html`` when that file exists (the link is relative
to the index file, so the folder can be moved or zipped as a whole). With ``--checkpoint``, the
chosen items (``--pack ID``, and the ``--worst N`` lowest scores) first get their evidence packs:
their clips are scored again with that checkpoint (records keep no per-frame similarities) and
a pack is refused when the new score differs from the record's
(:func:`.evidence.rescore_for_evidence`). The command is :mod:`.evidence_index_cli`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sf_fairseq.records import ScoreRecord
from sf_fairseq.resume import atomic_write_text

from . import metrics as m
from .evidence import (
    NOT_COMPUTED,
    VERDICT_STYLE,
    environment,
    fmt,
    new_figure,
    png_data_uri,
    rescore_for_evidence,
    write_evidence_pack,
)
from .results import OK

logger = logging.getLogger(__name__)

SCORE_FIELDS = (("score", "score (paper)"), ("score_speech", "score_speech (speech only)"))


Records = Sequence[ScoreRecord | Mapping[str, Any]]


def _typed(records: Records) -> list[ScoreRecord]:
    """Score records, typed (mappings are read with :meth:`ScoreRecord.from_dict`)."""
    return [ScoreRecord.coerce(r) for r in records]


def scored(records: Sequence[ScoreRecord], field: str) -> list[ScoreRecord]:
    """Records that enter the metrics of ``field`` (one of :data:`SCORE_FIELDS`): scored,
    labelled, with a finite value."""
    out = []
    for r in records:
        value = getattr(r, field)
        if r.ok and r.label in (0, 1) and isinstance(value, (int, float)) and math.isfinite(value):
            out.append(r)
    return out


def _columns(used: Sequence[ScoreRecord], field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, ``field`` values and categories (``unknown`` when missing) of ``used``."""
    return (np.array([r.label for r in used], dtype=int),
            np.array([getattr(r, field) for r in used], dtype=np.float64),
            np.array([r.category or "unknown" for r in used], dtype=object))


def auc_rows(used: Sequence[ScoreRecord], field: str, n_boot: int) -> list[dict[str, Any]]:
    """AUC with its 95% bootstrap interval, all fakes and each fake category against all reals."""
    labels, scores, cats = _columns(used, field)
    n_real = int((labels == 1).sum())
    groups = [("all fakes", labels == 0)] + [(c, (labels == 0) & (cats == c)) for c in sorted(set(cats[labels == 0]))]
    rows = []
    for name, fake in groups:
        sel = fake | (labels == 1)
        n_fake = int(fake.sum())
        if n_real == 0 or n_fake == 0:
            continue
        auc = m.roc_auc(labels[sel], scores[sel])
        lo, hi = m.bootstrap_intervals(labels[sel], scores[sel], n_boot=n_boot)["auc"] if n_boot else (None, None)
        rows.append({"group": name, "auc": fmt(auc), "low": fmt(lo), "high": fmt(hi), "n_real": n_real,
                     "n_fake": n_fake})
    return rows


def roc_figure(used: Sequence[ScoreRecord], field: str) -> str:
    """ROC of each fake category against all reals (fakes are the positives)."""
    labels, scores, cats = _columns(used, field)
    fig = new_figure(figsize=(4.6, 4.2))
    ax = fig.add_subplot()
    for cat in ["all fakes", *sorted(set(cats[labels == 0]))]:
        fake = (labels == 0) if cat == "all fakes" else (labels == 0) & (cats == cat)
        sel = fake | (labels == 1)
        fpr, tpr, _ = m.roc_curve(labels[sel] == 0, -scores[sel])
        ax.plot(fpr, tpr, lw=2 if cat == "all fakes" else 1, label=f"{cat} (n={int(fake.sum())})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="reals called fake (FPR)", ylabel="fakes detected (TPR)", title=f"ROC, {field}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return png_data_uri(fig)


def histogram_figure(used: Sequence[ScoreRecord], field: str) -> str:
    """Score histograms: reals against each fake category."""
    labels, scores, cats = _columns(used, field)
    fake_cats = sorted(set(cats[labels == 0])) or ["(no fakes)"]
    bins = np.histogram_bin_edges(scores, bins=30)
    fig = new_figure(figsize=(6, 1.0 + 1.5 * len(fake_cats)))
    axes = fig.subplots(len(fake_cats), 1, sharex=True, squeeze=False)[:, 0]
    for ax, cat in zip(axes, fake_cats):
        ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label=f"real (n={int((labels == 1).sum())})")
        fake = scores[(labels == 0) & (cats == cat)]
        if fake.size:
            ax.hist(fake, bins=bins, alpha=0.6, label=f"{cat} (n={fake.size})")
        ax.legend(fontsize=7)
    axes[-1].set_xlabel(f"{field} (higher = more likely real)")
    fig.tight_layout()
    return png_data_uri(fig)


def table_row(record: ScoreRecord, href: str | None) -> dict[str, Any]:
    """One item of the table: display text and sort key of each column."""

    def number(value: float | None) -> dict[str, Any]:
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        return {"text": fmt(float(value)) if ok else "", "key": value if ok else ""}

    status = record.status
    return {
        "id": record.id,
        "href": href,
        "label": {1: "real", 0: "fake"}.get(record.label, ""),
        "category": record.category or "",
        "verdict": record.verdict or "",
        "verdict_class": VERDICT_STYLE.get(record.verdict, "none"),
        "score": number(record.score),
        "score_speech": number(record.score_speech),
        "p_value": number(record.p_value),
        "reasons": ", ".join(record.reasons) if record.reasons else "",
        "status": status if status == OK else f"{status}: {record.error_type or ''} {record.error or ''}",
    }


def render_index(
    records: Records,
    links: Mapping[str, str] | None = None,
    title: str = "Evidence index",
    n_boot: int = 1000,
) -> str:
    """The index page as an HTML string.

    Args:
        records: score records (one per item; :class:`sf_fairseq.records.ScoreRecord`, or their on-disk mappings).
        links: item id -> href of its evidence pack (relative to the index file).
        title: page title.
        n_boot: bootstrap replicates of the AUC intervals (0: no intervals).
    """
    records = _typed(records)
    links = links or {}
    metrics = []
    for field, label in SCORE_FIELDS:
        used = scored(records, field)
        labels = {r.label for r in used}
        if labels != {0, 1}:
            continue
        metrics.append({"field": label, "n": len(used), "auc": auc_rows(used, field, n_boot),
                        "roc": roc_figure(used, field), "hist": histogram_figure(used, field)})
    return environment().get_template("index.html").render(
        title=title,
        rows=[table_row(r, links.get(r.id)) for r in records],
        metrics=metrics,
        not_computed=NOT_COMPUTED,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def pack_links(ids: Sequence[str], packs_dir: str | os.PathLike, index_path: str | os.PathLike) -> dict[str, str]:
    """``{id: href}`` for the ids whose pack ``<packs_dir>/<id>.html`` exists, relative to the
    index file's folder."""
    base = Path(index_path).resolve().parent
    links = {}
    for item_id in ids:
        pack = Path(packs_dir) / f"{item_id}.html"
        if pack.is_file():
            links[item_id] = Path(os.path.relpath(pack.resolve(), base)).as_posix()
    return links


def write_index(
    path: str | os.PathLike,
    records: Records,
    packs_dir: str | os.PathLike | None = None,
    title: str = "Evidence index",
    n_boot: int = 1000,
) -> Path:
    """Write the index page of ``records`` to ``path`` (atomically), linking the packs found in
    ``packs_dir``; returns the path."""
    records = _typed(records)
    links = {} if packs_dir is None else pack_links([r.id for r in records], packs_dir, path)
    atomic_write_text(path, render_index(records, links, title, n_boot))
    return Path(path)


def chosen_items(records: Records, ids: Sequence[str], worst: int) -> list[ScoreRecord]:
    """The records named in ``ids`` and the ``worst`` scored ones with the lowest scores, in
    that order, each once.

    Raises:
        ValueError: an id with no record.
    """
    records = _typed(records)
    by_id = {r.id: r for r in records}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"no record for: {', '.join(missing)}")
    ok = [r for r in records if r.ok and r.score is not None]
    lowest = sorted(ok, key=lambda r: r.score)[:worst]
    chosen: dict[str, ScoreRecord] = {}
    for record in [by_id[i] for i in ids] + lowest:
        chosen.setdefault(record.id, record)
    return list(chosen.values())


def write_packs(scorer: Any, records: Records, packs_dir: str | os.PathLike) -> list[Path]:
    """An evidence pack ``<packs_dir>/<id>.html`` for each record (a record whose clip cannot be
    scored again is logged and skipped)."""
    written = []
    for record in _typed(records):
        try:
            track = rescore_for_evidence(scorer, record.to_dict())
        except (OSError, ValueError) as err:
            logger.error("no evidence pack for %s: %s", record.id, err)
            continue
        written.append(write_evidence_pack(Path(packs_dir) / f"{record.id}.html", [track], title=record.id))
    return written


def pack_scorer(checkpoint: str | os.PathLike, records: Records, layer: int | None = None,
                cpu: bool = False) -> Any:
    """A scorer to score ``records`` again for their packs, with the settings they were scored
    with: their provenance's score options, layer and precision when they carry one, else the
    offset range their curves span and ``layer``.

    Raises:
        OSError, ValueError, pickle.UnpicklingError: the checkpoint cannot be loaded.
    """
    from .pipeline import ScoreOptions, load_scorer, pick_device

    records = _typed(records)
    prov = next((r.provenance for r in records if isinstance(r.provenance, dict)), None)
    if prov is not None and isinstance((prov.get("settings") or {}).get("score"), dict):
        options = ScoreOptions(**prov["settings"]["score"])
        layer = prov.get("layer") if layer is None else layer
        precision = prov.get("precision") or "fp32"
    else:
        k = {(len(r.curve) - 1) // 2 for r in records if r.curve}
        options = ScoreOptions(max_offset=k.pop()) if len(k) == 1 else ScoreOptions()
        precision = "fp32"
    return load_scorer(checkpoint, pick_device(cpu), layer, precision, options=options)
