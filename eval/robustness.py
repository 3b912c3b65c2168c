"""``sf-robustness``: the forgery score's AUC over a robustness grid (perturbation type x level,
plus the clean baseline). The options build a :class:`.robustness_engine.GridJob`; cells,
outputs, reuse and fingerprints are described in :mod:`.robustness_engine`, which does the work
(:func:`.robustness_engine.run_grid`).
"""

from __future__ import annotations

import argparse
import logging
import shlex

from sf_fairseq._logging import TIMED_LOG_FORMAT, command_logging

from . import lists
from .perturb_engine import TYPES, PerturbOptions
from .perturb_video import BLOCK_RULES
from .pipeline import add_scorer_arguments
from .robustness_engine import GridError, GridJob, parse_levels, parse_types, run_grid, type_name
from .scorer_settings import ScorerSettings

logger = logging.getLogger(__name__)


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


def job_from_arguments(args: argparse.Namespace) -> GridJob:
    """The grid the options describe.

    Raises:
        ValueError: an unknown type or a level out of range.
    """
    return GridJob(
        args.list, args.work_dir, args.results_path, ScorerSettings.from_arguments(args, args.path),
        data_root=args.data_root, category_rule=args.category_rule, roi=args.roi,
        types=tuple(parse_types(args.types)), levels=tuple(parse_levels(args.levels)), clean=not args.no_clean,
        perturbation=PerturbOptions(args.seed, args.block_rule, args.storage_crf, args.preset),
        prepare_args=tuple(shlex.split(args.prepare_args)), overwrite=args.overwrite, workers=args.workers,
        batch_size=args.batch_size, num_workers=args.num_workers, n_boot=args.n_boot, progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(TIMED_LOG_FORMAT):
        try:
            job = job_from_arguments(args)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        try:
            summary = run_grid(job)
        except GridError as err:
            raise SystemExit(f"error: {err}") from None
        clean = summary.clean_auc
        print(f"robustness grid: {summary.n_cells} cells; mean AUC over types {_fmt(summary.mean_auc)}"
              + ("" if clean is None else f" (clean {_fmt(clean)})")
              + f"; report in {summary.report_dir}")
        return 0


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
