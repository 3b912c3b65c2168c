"""Robustness grid: AUC of the forgery score under every perturbation type x level. The engine of
``sf-robustness`` (:mod:`.robustness`, the command): :class:`GridJob` → :func:`run_grid` →
:class:`GridSummary`.

For each cell (``vc_3``, ``gb_4``, ..., and ``clean``, the unperturbed baseline) this runs
perturb -> preprocess -> score -> metrics:

1. :func:`.perturb_engine.perturb_items` writes the perturbed copies of the list's videos;
2. raw videos (default) go through :func:`sf_fairseq.preprocess.prepare_engine.run` (mouth ROIs,
   16 kHz wavs; its status records are read with :func:`.results.prepare_item_status`); with ``--roi``
   the list holds mouth-ROI clips and their copies are scored as they are (a fast approximation,
   see :mod:`.perturb_engine`);
3. :func:`.batch_engine.score_items` scores the clips with one checkpoint (loaded once);
4. :func:`.report.write_report` writes the cell's metrics report.

Every item keeps its id in every cell; an item whose preprocessing fails in a cell (no face
found, ...) gets a ``failed`` record there and is left out of that cell's metrics (the table
gives each cell's item count).

Outputs::

    WORK_DIR/cells/<cell>/media/      perturbed copies (perturb.py layout)
    WORK_DIR/cells/<cell>/roi/        preprocessed ROIs (raw input only)
    RESULTS/cells/<cell>/scores.jsonl score records
    RESULTS/cells/<cell>/report/      the cell's report (report.json, report.md, roc.png, ...)
    RESULTS/report/report.{json,md}   the grid: AUC per cell, mean over levels per type
    RESULTS/report/auc_vs_level.png   AUC against level, one line per type

Media (``--work-dir``) do not depend on the checkpoint: score another checkpoint on the same
copies by giving another ``--results-path``. Reruns reuse finished cells (a cell is finished
when its report exists) and resume unfinished ones where they stopped (copies, ROIs and
records already written are kept). Each cell's results are keyed by
``RESULTS/cells/<cell>/fingerprint.json``: everything that changes its scores (checkpoint
content hash, layer, offsets, caps, precision, the list's content hash and data root, the
perturbation and preprocessing settings). A rerun with other settings is refused, naming them,
unless ``--overwrite`` is given (the cell's old scores and report are then discarded); records
of items whose input files changed are scored again (see :mod:`.score_batch`). One grid run at
a time works on a ``--results-path`` (a second is refused, naming the first).

Cell records are ``sf-score-batch``'s, with ``provenance`` (the checkpoint, the scored files,
every setting) and the verdict fields of :mod:`.verdict` made with the default verdict,
offset-drift and voice-activity settings and no reference set (so every verdict is
``inconclusive``, reason ``uncalibrated``); the grid has no verdict options, and its AUCs are
those of the paper's ``score``, which the verdict settings do not change.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sf_fairseq import resume
from sf_fairseq.preprocess import prepare_engine

from . import lists
from .perturb_audio import AUDIO_PERTURBATIONS
from .perturb_engine import (
    LEVELS, TYPES, PerturbOptions, cell_name, check_cell, perturb_items, plan_jobs, relative_to_root,
)
from .perturb_video import VIDEO_PERTURBATIONS
from .report import write_report
from .results import ResultWriter, latest_records, prepare_item_status
from .scorer_settings import ScorerSettings

logger = logging.getLogger(__name__)

CLEAN = "clean"


def type_name(code: str) -> str:
    if code in VIDEO_PERTURBATIONS:
        return VIDEO_PERTURBATIONS[code].name
    return AUDIO_PERTURBATIONS[code].name


def parse_types(spec: str) -> list[str]:
    """``video`` (the 7 protocol types), ``audio``, ``all`` or a comma list of codes."""
    named = {"video": list(VIDEO_PERTURBATIONS), "audio": list(AUDIO_PERTURBATIONS), "all": list(TYPES)}
    if spec in named:
        return named[spec]
    codes = [c.strip() for c in spec.split(",") if c.strip()]
    for code in codes:
        check_cell(code, 1)
    return codes


def parse_levels(spec: str) -> list[int]:
    """``1-5`` or ``1,3,5``."""
    if "-" in spec:
        low, high = (int(x) for x in spec.split("-", 1))
        levels = list(range(low, high + 1))
    else:
        levels = [int(x) for x in spec.split(",") if x.strip()]
    if not levels or any(level not in LEVELS for level in levels):
        raise ValueError(f"levels must be within {LEVELS}, got {spec!r}")
    return levels


def _prepare(videos_txt: Path, root: str, roi_dir: Path, workers: int, extra: Sequence[str]) -> None:
    """Preprocess the inputs of ``videos_txt`` into ``roi_dir``; ``extra`` are ``sf-prepare``
    options (``--prepare-args``; the grid's own ``root`` and ``workers`` are used)."""
    parser = argparse.ArgumentParser(prog="sf-robustness --prepare-args", add_help=False)
    prepare_engine.add_prepare_options(parser)
    job = prepare_engine.job_from_arguments(videos_txt, roi_dir, parser.parse_args(list(extra)))
    job = dataclasses.replace(job, root=root, workers=workers)
    logger.info("preprocessing %s into %s (sf-prepare options: %s)", videos_txt, roi_dir, shlex.join(extra) or "none")
    try:
        prepare_engine.run(job)  # some inputs not ok: their status records say why
    except prepare_engine.PrepareError as err:  # e.g. a ROI folder of other settings
        logger.error("preprocessing %s: %s", videos_txt, err)


def _prepare_ids(videos_txt: Path, root: str, rels: Sequence[str]) -> list[str | None]:
    """The ids ``sf-prepare`` gives the inputs of ``videos_txt`` (its own naming rule: inputs
    sharing a stem keep their extension), in the order of ``rels``; None for an input it
    refuses under any id."""
    by_path = {Path(i.path): (None if i.problem else i.id)
               for i in prepare_engine.discover_inputs(videos_txt, root)}
    return [by_path.get((Path(root) / rel).resolve()) for rel in rels]


def _roi_items(
    items: list[lists.EvalItem], prepare_ids: list[str | None], roi_dir: Path
) -> tuple[list[lists.EvalItem], list[tuple[lists.EvalItem, str, str]]]:
    """Scoring items from ``prepare``'s status records; items it did not make a ROI for come
    back as ``(item, error_type, reason)``."""
    ok, failed = [], []
    for item, prepare_id in zip(items, prepare_ids):
        if prepare_id is None:
            failed.append((item, "prepare:bad_name", f"sf-prepare cannot take {item.video} (see its log)"))
            continue
        status = prepare_item_status(roi_dir, prepare_id)
        if status is None:
            failed.append((item, "PrepareMissing", f"no preprocessing record {roi_dir / 'status' / prepare_id}.json"))
            continue
        record = status.record
        if record.get("status") != "ok" or not record.get("tracks"):
            failed.append((item, f"prepare:{record.get('status')}", record.get("reason") or ""))
            continue
        ok.append(lists.EvalItem(item.id, str(roi_dir / record["tracks"][0]["video"]),
                                 str(roi_dir / record["audio"]), item.label, item.category))
    return ok, failed


class Grid:
    """Runs cells; the scorer is loaded on first use."""

    def __init__(self, job: GridJob, items: list[lists.EvalItem]):
        self.job = job
        self.items = items
        self.work_dir = Path(job.work_dir)
        self.results = Path(job.results_path)
        self.options = job.perturbation
        self._scorer = None

    def scorer(self):
        if self._scorer is None:
            self._scorer = self.job.scorer.load()
        return self._scorer

    def report_path(self, cell: str) -> Path:
        return self.results / "cells" / cell / "report" / "report.json"

    def cell_items(self, cell: str, code: str | None, level: int | None) -> tuple[list[lists.EvalItem], list]:
        """Perturb (and preprocess) one cell; returns the items to score and those that failed."""
        a = self.job
        cell_dir = self.work_dir / "cells" / cell
        if code is not None:
            counts = perturb_items(self.items, a.data_root, cell_dir / "media", code, level, self.options,
                                   a.roi, a.workers, progress=a.progress)
            logger.info("%s: copies %s", cell, counts)
            jobs = plan_jobs(self.items, a.data_root, cell_dir / "media", a.roi)
            copied = {j.item.id for j in jobs if os.path.exists(j.video)}
            failed = [(j.item, "PerturbFailed", f"no perturbed copy of {j.item.video} (see perturb.log.jsonl)")
                      for j in jobs if j.item.id not in copied]
            jobs = [j for j in jobs if j.item.id in copied]
            if a.roi:
                copies = [lists.EvalItem(j.item.id, j.video, j.audio, j.item.label, j.item.category) for j in jobs]
                return copies, failed
            ok, not_prepared = self._prepare_jobs([j.item for j in jobs], [j.rel_video for j in jobs],
                                                  cell_dir / "media", cell_dir)
            return ok, failed + not_prepared
        if a.roi:
            return list(self.items), []
        rels = [relative_to_root(item.video, a.data_root) for item in self.items]
        cell_dir.mkdir(parents=True, exist_ok=True)
        return self._prepare_jobs(self.items, rels, Path(a.data_root or "/"), cell_dir)

    def _prepare_jobs(self, items, rels, root: Path, cell_dir: Path):
        videos_txt = cell_dir / "prepare_inputs.txt"
        resume.atomic_write_text(videos_txt, "".join(str(root / rel) + "\n" for rel in rels))
        _prepare(videos_txt, str(root), cell_dir / "roi", self.job.workers, self.job.prepare_args)
        return _roi_items(items, _prepare_ids(videos_txt, str(root), rels), cell_dir / "roi")

    def cell_settings(self, cell: str, code: str | None, level: int | None) -> dict[str, Any]:
        """Everything that changes a cell's scores (its fingerprint, and its report's ``inputs``);
        files by content, so a checkpoint or list moved elsewhere is still the same."""
        a, scorer = self.job, self.job.scorer
        return {
            "cell": cell, "type": code, "level": level,
            "checkpoint_sha256": resume.file_sha256(scorer.checkpoint),
            "layer": scorer.layer, "max_offset": scorer.max_offset, "max_seconds": scorer.max_seconds or None,
            "precision": scorer.resolved_precision(),
            "list_sha256": resume.file_sha256(a.list_path),
            "data_root": None if a.data_root is None else os.path.abspath(a.data_root),
            "category_rule": a.category_rule, "roi": a.roi,
            "prepare_args": None if a.roi else list(a.prepare_args),
            "perturbation": None if code is None else {"seed": self.options.seed,
                                                       "block_rule": self.options.block_rule,
                                                       "storage_crf": self.options.storage_crf,
                                                       "preset": self.options.preset},
        }

    def accept_cell(self, cell: str, settings: dict[str, Any]) -> None:
        """Keep the cell's results if made with ``settings``, discard them (``--overwrite``) or
        raise :class:`.resume.SettingsMismatch`; then record ``settings``."""
        cell_dir = self.results / "cells" / cell
        record = cell_dir / "fingerprint.json"
        outputs = [cell_dir / "scores.jsonl", cell_dir / "report"]
        if any(path.exists() for path in outputs):
            hint = "pass --overwrite to discard them, or give another --results-path"
            reuse = resume.check_fingerprint(record, settings, f"cell {cell}", self.job.overwrite, hint)
            if not reuse and not record.is_file() and not self.job.overwrite:
                raise resume.SettingsMismatch(f"cell {cell}", record, ["<no settings record: older version?>"], hint)
            if not reuse:
                outputs[0].unlink(missing_ok=True)
                shutil.rmtree(outputs[1], ignore_errors=True)
        resume.write_fingerprint(record, settings)

    def run_cell(self, code: str | None, level: int | None) -> dict[str, Any]:
        """The cell's report (reused when it exists)."""
        from .batch_engine import failed_record, score_items

        cell = CLEAN if code is None else cell_name(code, level)
        a = self.job
        settings = self.cell_settings(cell, code, level)
        self.accept_cell(cell, settings)
        report_path = self.report_path(cell)
        if report_path.exists():
            logger.info("%s: finished earlier, reusing %s", cell, report_path)
            return json.loads(report_path.read_text(encoding="utf-8"))
        to_score, failed = self.cell_items(cell, code, level)
        scores = self.results / "cells" / cell / "scores.jsonl"
        with ResultWriter(scores) as writer:
            for item, error_type, reason in failed:
                if item.id not in writer.done:
                    writer.write(failed_record(item, error_type, reason))
            pending = [item for item in to_score if item.id not in writer.done]
            if pending:
                counts = score_items(to_score, self.scorer(), writer, a.batch_size,
                                     num_workers=a.num_workers, progress=a.progress,
                                     checkpoint=os.fspath(a.scorer.checkpoint))
                logger.info("%s: scoring %s", cell, counts)
        latest = latest_records([scores])
        records = [latest[item.id] for item in self.items if item.id in latest]  # list order
        return write_report(records, report_path.parent, n_boot=a.n_boot,
                            title=f"Forgery score report, cell {cell}", extra=settings)


def _auc(rep: dict[str, Any] | None) -> float | None:
    return rep["metrics"]["auc"] if rep and rep.get("metrics") else None


def grid_table(reports: dict[str, dict[str, Any]], types: list[str], levels: list[int]) -> dict[str, Any]:
    """AUC per cell, mean over levels per type, mean over types per level, and item counts."""
    rows = {}
    for code in types:
        aucs = {level: _auc(reports.get(cell_name(code, level))) for level in levels}
        known = [v for v in aucs.values() if v is not None]
        rows[code] = {
            "name": type_name(code),
            "auc": {str(level): v for level, v in aucs.items()},
            "n_used": {str(level): (reports.get(cell_name(code, level)) or {}).get("n_used") for level in levels},
            "mean": float(np.mean(known)) if len(known) == len(levels) else None,
        }
    per_level = {}
    for level in levels:
        vals = [rows[c]["auc"][str(level)] for c in types]
        per_level[str(level)] = float(np.mean(vals)) if vals and None not in vals else None
    means = [rows[c]["mean"] for c in types]
    return {
        "clean": {"auc": _auc(reports.get(CLEAN)), "n_used": (reports.get(CLEAN) or {}).get("n_used")},
        "types": rows,
        "mean_per_level": per_level,
        "mean": float(np.mean(means)) if means and None not in means else None,
    }


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def grid_markdown(table: dict[str, Any], levels: list[int], inputs: dict[str, Any]) -> str:
    lines = ["# Robustness report", ""]
    shown = ", ".join(map(str, levels))
    lines.append(f"AUC (real vs fake, higher = better) per perturbation type and level; 'mean' is the "
                 f"mean over levels {shown} (over 1-5 it is the protocol's number per type).")
    media = "mouth-ROI clips perturbed (fast option)" if inputs["roi"] else "raw videos perturbed, then preprocessed"
    lines += ["", f"Checkpoint: `{inputs['checkpoint']}`; list: `{inputs['list']}`; {media}; "
              f"seed {inputs['seed']}; block rule {inputs['block_rule']}.", ""]
    if table["clean"]["auc"] is not None:
        lines += [f"Clean (unperturbed): AUC {_fmt(table['clean']['auc'])} on {table['clean']['n_used']} items.", ""]
    head = "| type | " + " | ".join(f"L{lv}" for lv in levels) + " | mean |"
    lines += [head, "|---" * (len(levels) + 2) + "|"]
    for code, row in table["types"].items():
        cells = " | ".join(_fmt(row["auc"][str(lv)]) for lv in levels)
        lines.append(f"| {code} ({row['name']}) | {cells} | {_fmt(row['mean'])} |")
    cells = " | ".join(_fmt(table["mean_per_level"][str(lv)]) for lv in levels)
    lines.append(f"| mean over types | {cells} | {_fmt(table['mean'])} |")
    counts = [n for row in table["types"].values() for n in row["n_used"].values() if n is not None]
    if counts:
        lines += ["", f"Items used per cell: {min(counts)}-{max(counts)} (items that failed in a cell, "
                  "e.g. no face found after the perturbation, are left out of that cell; see its report)."]
    lines += ["", "Per-cell reports: `cells/<type>_<level>/report/report.md`.", "",
              "![AUC against level](auc_vs_level.png)"]
    return "\n".join(lines) + "\n"


def plot_grid(table: dict[str, Any], levels: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = table["clean"]["auc"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for code, row in table["types"].items():
        xs = ([0] if clean is not None else []) + levels
        ys = ([clean] if clean is not None else []) + [row["auc"][str(lv)] for lv in levels]
        ys = [np.nan if y is None else y for y in ys]
        ax.plot(xs, ys, marker="o", label=f"{code} ({row['name']}, mean {_fmt(row['mean'])})")
    if clean is not None:
        ax.axhline(clean, ls=":", c="grey", lw=1)
    ax.set_xticks(([0] if clean is not None else []) + levels,
                  (["clean"] if clean is not None else []) + [str(lv) for lv in levels])
    ax.set(xlabel="level", ylabel="AUC", title="AUC against perturbation level")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_grid_report(reports: dict[str, dict[str, Any]], types: list[str], levels: list[int], out_dir: Path,
                      inputs: dict[str, Any]) -> dict[str, Any]:
    """``report.json``, ``report.md`` and ``auc_vs_level.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = grid_table(reports, types, levels)
    rep = {"levels": levels, **table, "inputs": inputs}
    plot_grid(table, levels, out_dir / "auc_vs_level.png")
    for name, text in (("report.json", json.dumps(rep, indent=2) + "\n"),
                       ("report.md", grid_markdown(table, levels, inputs))):
        resume.atomic_write_text(out_dir / name, text)
    return rep


class GridError(ValueError):
    """A grid that cannot run: unreadable list, repeated ids, results of other settings, or
    another grid running on the same results folder (``sf-robustness`` says ``error: ...``)."""


@dataclass(frozen=True)
class GridJob:
    """One robustness grid (the options of ``sf-robustness``).

    Attributes:
        list_path: SpeechForensics ``test_list.txt`` or CSV; ``data_root`` the root its paths
            are relative to; ``category_rule`` how categories are inferred from paths.
        work_dir: perturbed copies and ROIs (checkpoint-independent).
        results_path: scores, cell reports and the grid report.
        scorer: the checkpoint and score settings.
        roi: the list holds mouth-ROI clips (perturbed directly, not preprocessed).
        types, levels: the cells (type codes, levels 1-5); ``clean`` adds the unperturbed one.
        perturbation: seed, block rule, storage CRF and preset of the copies.
        prepare_args: extra ``sf-prepare`` options for raw input (recorded in the fingerprints).
        overwrite: discard the results of cells made with other settings instead of refusing.
        workers: processes for perturbing and preprocessing; ``num_workers`` clip loaders while
            scoring; ``batch_size`` clips per model call; ``n_boot`` bootstrap replicates.
    """

    list_path: str | os.PathLike
    work_dir: str | os.PathLike
    results_path: str | os.PathLike
    scorer: ScorerSettings
    data_root: str | None = None
    category_rule: str = "auto"
    roi: bool = False
    types: tuple[str, ...] = tuple(VIDEO_PERTURBATIONS)
    levels: tuple[int, ...] = LEVELS
    clean: bool = True
    perturbation: PerturbOptions = PerturbOptions()
    prepare_args: tuple[str, ...] = ()
    overwrite: bool = False
    workers: int = 1
    batch_size: int = 8
    num_workers: int = 2
    n_boot: int = 1000
    progress: bool = True


@dataclass(frozen=True)
class GridSummary:
    """The grid report (``report.json``'s content) and where it was written."""

    report: dict[str, Any]
    report_dir: Path
    n_cells: int

    @property
    def mean_auc(self) -> float | None:
        return self.report["mean"]

    @property
    def clean_auc(self) -> float | None:
        return self.report["clean"]["auc"]


def run_grid(job: GridJob) -> GridSummary:
    """Run (or reuse) every cell of ``job``, then write the grid report, holding the results
    folder's lock.

    Raises:
        GridError: see :class:`GridError`.
    """
    try:
        items = lists.read_list(job.list_path, job.data_root, job.category_rule)
    except (OSError, ValueError) as err:
        raise GridError(str(err)) from err
    if len({item.id for item in items}) != len(items):
        raise GridError("the list names some item more than once (ids must be unique)")
    grid = Grid(job, items)
    cells: list[tuple[str | None, int | None]] = [(None, None)] if job.clean else []
    cells += [(code, level) for code in job.types for level in job.levels]
    results = Path(job.results_path)
    try:
        with resume.exclusive_output(results / "grid.lock", f"robustness grid in {job.results_path}",
                                     job.results_path):
            return _run_cells(job, grid, cells)
    except resume.RunLocked as err:
        raise GridError(str(err)) from None


def _run_cells(job: GridJob, grid: Grid, cells: list[tuple[str | None, int | None]]) -> GridSummary:
    """Every cell, then the grid report (the results lock held)."""
    reports = {}
    for code, level in cells:
        name = CLEAN if code is None else cell_name(code, level)
        try:
            reports[name] = grid.run_cell(code, level)
        except (resume.SettingsMismatch, ValueError) as err:  # earlier output of other settings, bad options
            raise GridError(str(err)) from None
        logger.info("%s: AUC %s", name, _fmt(_auc(reports[name])))
    scorer, options = job.scorer, job.perturbation
    inputs = {"checkpoint": os.path.abspath(scorer.checkpoint),
              "checkpoint_sha256": resume.file_sha256(scorer.checkpoint),
              "list": os.path.abspath(job.list_path),
              "data_root": job.data_root, "roi": job.roi, "seed": options.seed, "block_rule": options.block_rule,
              "storage_crf": options.storage_crf, "types": list(job.types), "layer": scorer.layer}
    report_dir = Path(job.results_path) / "report"
    rep = write_grid_report(reports, list(job.types), list(job.levels), report_dir, inputs)
    return GridSummary(rep, report_dir, len(cells))
