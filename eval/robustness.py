"""Robustness grid: AUC of the forgery score under every perturbation type x level.

For each cell (``vc_3``, ``gb_4``, ..., and ``clean``, the unperturbed baseline) this runs
perturb -> preprocess -> score -> metrics:

1. :func:`.perturb.perturb_items` writes the perturbed copies of the list's videos;
2. raw videos (default) go through ``python -m sf_fairseq.preprocess.prepare`` (mouth ROIs,
   16 kHz wavs); with ``--roi`` the list holds mouth-ROI clips and their copies are scored as
   they are (a fast approximation, see :mod:`.perturb`);
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
import json
import logging
import os
import shlex
import shutil
from argparse import Namespace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sf_fairseq import resume

from . import lists
from .perturb import LEVELS, TYPES, PerturbOptions, cell_name, check_cell, perturb_items, plan_jobs, relative_to_root
from .perturb_audio import AUDIO_PERTURBATIONS
from .perturb_video import BLOCK_RULES, VIDEO_PERTURBATIONS
from .pipeline import add_scorer_arguments, precision_from_arguments
from .report import write_report
from .results import ResultWriter, latest_records

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
    from sf_fairseq.preprocess import prepare

    argv = [str(videos_txt), str(roi_dir), "--root", root, "--workers", str(workers), *extra]
    logger.info("preprocessing: python -m sf_fairseq.preprocess.prepare %s", shlex.join(argv))
    prepare.main(argv)  # a non-zero status only means some inputs are not ok; their records say why


def _prepare_ids(videos_txt: Path, root: str, rels: Sequence[str]) -> list[str | None]:
    """The ids ``sf-prepare`` gives the inputs of ``videos_txt`` (its own naming rule: inputs
    sharing a stem keep their extension), in the order of ``rels``; None for an input it
    refuses under any id."""
    from sf_fairseq.preprocess.prepare import discover_inputs

    by_path = {Path(i.path): (None if i.problem else i.id) for i in discover_inputs(videos_txt, root)}
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
        status_path = roi_dir / "status" / f"{prepare_id}.json"
        try:
            record = json.loads(status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            failed.append((item, "PrepareMissing", f"no preprocessing record {status_path}"))
            continue
        if record.get("status") != "ok" or not record.get("tracks"):
            failed.append((item, f"prepare:{record.get('status')}", record.get("reason") or ""))
            continue
        ok.append(lists.EvalItem(item.id, str(roi_dir / record["tracks"][0]["video"]),
                                 str(roi_dir / record["audio"]), item.label, item.category))
    return ok, failed


class Grid:
    """Runs cells; the scorer is loaded on first use."""

    def __init__(self, args: Namespace, items: list[lists.EvalItem]):
        self.args = args
        self.items = items
        self.work_dir = Path(args.work_dir)
        self.results = Path(args.results_path)
        self.options = PerturbOptions(args.seed, args.block_rule, args.storage_crf, args.preset)
        self._scorer = None

    def scorer(self):
        if self._scorer is None:
            from .pipeline import load_scorer_from_arguments, pick_device

            self._scorer = load_scorer_from_arguments(self.args, self.args.path, pick_device(self.args.cpu))
        return self._scorer

    def report_path(self, cell: str) -> Path:
        return self.results / "cells" / cell / "report" / "report.json"

    def cell_items(self, cell: str, code: str | None, level: int | None) -> tuple[list[lists.EvalItem], list]:
        """Perturb (and preprocess) one cell; returns the items to score and those that failed."""
        a = self.args
        cell_dir = self.work_dir / "cells" / cell
        if code is not None:
            counts = perturb_items(self.items, a.data_root, cell_dir / "media", code, level, self.options,
                                   a.roi, a.workers, progress=not a.no_progress)
            logger.info("%s: copies %s", cell, counts)
            jobs = plan_jobs(self.items, a.data_root, cell_dir / "media", a.roi)
            copied = {j.item.id for j in jobs if os.path.exists(j.video)}
            failed = [(j.item, "PerturbFailed", f"no perturbed copy of {j.item.video} (see perturb.log.jsonl)")
                      for j in jobs if j.item.id not in copied]
            jobs = [j for j in jobs if j.item.id in copied]
            if a.roi:
                return [lists.EvalItem(j.item.id, j.video, j.audio, j.item.label, j.item.category) for j in jobs], failed
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
        _prepare(videos_txt, str(root), cell_dir / "roi", self.args.workers, shlex.split(self.args.prepare_args))
        return _roi_items(items, _prepare_ids(videos_txt, str(root), rels), cell_dir / "roi")

    def cell_settings(self, cell: str, code: str | None, level: int | None) -> dict[str, Any]:
        """Everything that changes a cell's scores (its fingerprint, and its report's ``inputs``);
        files by content, so a checkpoint or list moved elsewhere is still the same."""
        a = self.args
        return {
            "cell": cell, "type": code, "level": level,
            "checkpoint_sha256": resume.file_sha256(a.path),
            "layer": a.layer, "max_offset": a.max_offset, "max_seconds": a.max_seconds or None,
            "precision": precision_from_arguments(a),
            "list_sha256": resume.file_sha256(a.list),
            "data_root": None if a.data_root is None else os.path.abspath(a.data_root),
            "category_rule": a.category_rule, "roi": a.roi,
            "prepare_args": None if a.roi else shlex.split(a.prepare_args),
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
            reuse = resume.check_fingerprint(record, settings, f"cell {cell}", self.args.overwrite, hint)
            if not reuse and not record.is_file() and not self.args.overwrite:
                raise resume.SettingsMismatch(f"cell {cell}", record, ["<no settings record: older version?>"], hint)
            if not reuse:
                outputs[0].unlink(missing_ok=True)
                shutil.rmtree(outputs[1], ignore_errors=True)
        resume.write_fingerprint(record, settings)

    def run_cell(self, code: str | None, level: int | None) -> dict[str, Any]:
        """The cell's report (reused when it exists)."""
        from .batch_engine import failed_record, score_items

        cell = CLEAN if code is None else cell_name(code, level)
        a = self.args
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
                                     num_workers=a.num_workers, progress=not a.no_progress, checkpoint=a.path)
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
    lines += ["", f"Checkpoint: `{inputs['checkpoint']}`; list: `{inputs['list']}`; "
              f"{'mouth-ROI clips perturbed (fast option)' if inputs['roi'] else 'raw videos perturbed, then preprocessed'}; "
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.robustness",
        description=(
            "Run the forgery score over a robustness grid (perturbation type x level, plus the "
            "clean baseline): perturb -> preprocess -> score -> metrics per cell, then a table of "
            "AUC per cell with the mean per type and a plot of AUC against level. Reruns reuse "
            "finished cells."
        ),
        epilog="Types: " + ", ".join(f"{c} ({type_name(c)})" for c in TYPES)
        + ". 'video' = the DeeperForensics protocol's 7 types, 'audio' = the audio ones, 'all' = both.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--list", required=True, help="SpeechForensics test_list.txt or CSV (path,label[,category][,audio])")
    p.add_argument("--data-root", help="root the list's paths are relative to")
    p.add_argument("--roi", action="store_true",
                   help="the list holds mouth-ROI clips (wav beside): perturb them directly, no preprocessing")
    p.add_argument("--work-dir", required=True, help="folder for perturbed copies and ROIs (checkpoint-independent)")
    p.add_argument("--results-path", required=True, help="folder for scores, cell reports and the grid report")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the results of cells made with other settings (without it such a rerun is refused)")
    p.add_argument("--types", default="video", help="'video', 'audio', 'all' or a comma list of type codes")
    p.add_argument("--levels", default="1-5", help="levels, e.g. 1-5 or 1,3,5")
    p.add_argument("--no-clean", action="store_true", help="skip the unperturbed baseline cell")
    p.add_argument("--seed", type=int, default=0, help="base random seed of the perturbations")
    p.add_argument("--block-rule", default="reference", choices=BLOCK_RULES,
                   help="bw block count: the reference's (no blocks under 256 px) or resolution-independent")
    p.add_argument("--storage-crf", type=int, default=18, help="libx264 CRF of re-encoded frames (not vc)")
    p.add_argument("--preset", default="medium", help="libx264 preset")
    p.add_argument("--workers", type=int, default=1, help="processes for perturbing and preprocessing")
    p.add_argument("--prepare-args", default="", help="extra preprocess.prepare options, e.g. '--detect-every 5'")
    p.add_argument("--category-rule", default="auto", choices=sorted(lists.CATEGORY_RULES),
                   help="how to infer categories from paths when the list has none")
    add_scorer_arguments(p)
    p.add_argument("--batch-size", type=int, default=8, help="clips per model call")
    p.add_argument("--num-workers", type=int, default=2, help="clip loading processes while scoring")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates in each cell's report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    try:
        types, levels = parse_types(args.types), parse_levels(args.levels)
        items = lists.read_list(args.list, args.data_root, args.category_rule)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    if len({item.id for item in items}) != len(items):
        raise SystemExit("error: the list names some item more than once (ids must be unique)")
    grid = Grid(args, items)
    cells: list[tuple[str | None, int | None]] = [] if args.no_clean else [(None, None)]
    cells += [(code, level) for code in types for level in levels]
    try:
        with resume.exclusive_output(Path(args.results_path) / "grid.lock", f"robustness grid in {args.results_path}",
                                     args.results_path):
            return run_grid(args, grid, cells, types, levels)
    except resume.RunLocked as err:
        raise SystemExit(f"error: {err}") from None


def run_grid(args: Namespace, grid: Grid, cells: list[tuple[str | None, int | None]], types: list[str],
             levels: list[int]) -> int:
    """Every cell, then the grid report (the results lock held)."""
    reports = {}
    for code, level in cells:
        name = CLEAN if code is None else cell_name(code, level)
        try:
            reports[name] = grid.run_cell(code, level)
        except (resume.SettingsMismatch, ValueError) as err:  # earlier output of other settings, bad options
            raise SystemExit(f"error: {err}") from None
        logger.info("%s: AUC %s", name, _fmt(_auc(reports[name])))
    inputs = {"checkpoint": os.path.abspath(args.path), "checkpoint_sha256": resume.file_sha256(args.path),
              "list": os.path.abspath(args.list),
              "data_root": args.data_root, "roi": args.roi, "seed": args.seed, "block_rule": args.block_rule,
              "storage_crf": args.storage_crf, "types": types, "layer": args.layer}
    rep = write_grid_report(reports, types, levels, Path(args.results_path) / "report", inputs)
    clean = rep["clean"]["auc"]
    print(f"robustness grid: {len(cells)} cells; mean AUC over types {_fmt(rep['mean'])}"
          + ("" if clean is None else f" (clean {_fmt(clean)})")
          + f"; report in {Path(args.results_path) / 'report'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
