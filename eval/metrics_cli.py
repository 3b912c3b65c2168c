"""Metrics report from score records, and threshold calibration on real clips.

Examples::

    # AUC/AP/EER, per-category AUC, bootstrap intervals, ROC and histogram plots
    python -m sf_fairseq.eval.metrics_cli out/favc --out out/favc/report

    # threshold calling 1% of real clips fake, saved with its provenance
    python -m sf_fairseq.eval.metrics_cli out/real_only --calibrate-fpr 0.01 \\
        --calibration-out threshold.json

    # report at that threshold
    python -m sf_fairseq.eval.metrics_cli out/favc --calibration threshold.json

    # also the HTML index page, with evidence packs of the 20 lowest-scoring items
    sf-report out/favc --html --checkpoint large_vox_iter5.pt --worst 20

Inputs are ``scores*.jsonl`` files or directories holding them (shards are merged; for an id
seen twice the last record wins). Only scored items with a label enter the metrics; the report
says how many were left out and why. Calibration uses the scored items labelled real (1).
Records with verdict fields add the speech-gated score's AUC and the table of verdicts and
inconclusive reasons per category (:mod:`.report`).

``--html`` also writes the batch index page (:mod:`.evidence_index`: one self-contained HTML
file, default ``<out>/index.html``) linking every item whose evidence pack is in the
``packs/`` folder beside it (``packs/<id>.html``). With ``--checkpoint`` (the checkpoint the
records were scored with), the items ``--worst N`` (lowest paper's scores) and ``--pack ID``
first get their packs there: their clips are scored again with the recorded layer and score
settings (a pack whose new score differs from the record's is refused and logged).
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np

from sf_fairseq._logging import LOG_FORMAT, command_logging
from sf_fairseq.records import RecordError, ScoreRecord

from .evidence_index import chosen_items, pack_scorer, write_index, write_packs
from .metrics import Calibration, calibrate_threshold
from .report import write_report
from .results import latest_records, result_files


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.metrics_cli",
        description="Metrics report (Markdown + JSON + PNG) from score records, and calibration.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("results", nargs="+", help="scores*.jsonl files or directories holding them")
    p.add_argument("--out", help="report directory (default: <first results dir>/report)")
    p.add_argument("--threshold", type=float, help="also report accuracy at this score threshold")
    p.add_argument("--calibration", help="calibration JSON whose threshold to report at")
    p.add_argument("--calibrate-fpr", type=float,
                   help="compute a threshold calling this fraction of the real clips fake")
    p.add_argument("--calibration-out", help="where to save the calibration (with --calibrate-fpr)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (0 = no intervals)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--title", default="Forgery score report", help="report title")
    html = p.add_argument_group("HTML index and evidence packs")
    html.add_argument("--html", nargs="?", const="", default=None, metavar="PATH",
                      help="also write the batch index page, one self-contained HTML file (default PATH: "
                      "<out>/index.html), linking the evidence packs found in packs/ beside it")
    html.add_argument("--checkpoint", help="with --html: write evidence packs (to packs/) for the items of "
                      "--worst/--pack, scoring their clips again with this checkpoint (the one they were "
                      "scored with; safe loader)")
    html.add_argument("--worst", type=int, default=0, metavar="N", help="packs for the N lowest-scoring items")
    html.add_argument("--pack", action="append", default=[], metavar="ID", help="a pack for this item (repeatable)")
    html.add_argument("--layer", type=int, default=None,
                      help="layer the records were scored with (default: their provenance's, else run.json's)")
    html.add_argument("--cpu", action="store_true", help="score the packs' clips on CPU even if a GPU is available")
    return p


def _run_info(paths: list[Path]) -> dict:
    """``run*.json`` written by score_batch beside the score files (first one found)."""
    for path in paths:
        for candidate in sorted(path.parent.glob("run*.json")):
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
    return {}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        if args.threshold is not None and args.calibration:
            raise SystemExit("error: give --threshold or --calibration, not both")
        if (args.worst or args.pack) and (args.html is None or not args.checkpoint):
            raise SystemExit("error: --worst/--pack need --html and --checkpoint")
        try:
            files = result_files(args.results)
            records = latest_records(files)
        except (OSError, RecordError) as err:
            raise SystemExit(f"error: {err}") from err
        run_info = _run_info(files)

        if args.calibrate_fpr is not None:
            if not args.calibration_out:
                raise SystemExit("error: --calibrate-fpr needs --calibration-out")
            real = [r.score for r in records.values() if r.ok and r.label == 1]
            if not real:
                raise SystemExit("error: no scored real (label 1) items to calibrate on")
            cal = calibrate_threshold(
                np.array(real),
                args.calibrate_fpr,
                checkpoint=run_info.get("checkpoint"),
                layer=run_info.get("layer"),
                list=run_info.get("input"),
                max_offset=run_info.get("max_offset"),
                max_seconds=run_info.get("max_seconds"),
                results=[str(f) for f in files],
            )
            cal.save(args.calibration_out)
            note = " (too few reals to resolve that rate)" if len(real) * args.calibrate_fpr < 1 else ""
            print(f"threshold {cal.threshold:.6f} from {cal.n_real} real clips: {cal.achieved_fpr:.4f} "
                  f"of them called fake (target {cal.target_fpr}){note}; saved to {args.calibration_out}")

        threshold = args.threshold
        if args.calibration:
            threshold = Calibration.load(args.calibration).threshold
        out = Path(args.out) if args.out else files[0].parent / "report"
        rep = write_report(records.values(), out, threshold=threshold, n_boot=args.n_boot, seed=args.seed,
                           title=args.title, extra=run_info or None)
        if rep["metrics"]:
            met = rep["metrics"]
            print(f"AUC {met['auc']:.4f}  AP {met['ap']:.4f}  EER {met['eer']:.4f} "
                  f"on {rep['n_used']} items ({rep['n_real']} real, {rep['n_fake']} fake); "
                  f"{rep['n_left_out']} left out; report in {out}")
        else:
            print(f"no metrics: {rep['metrics_note']}; {rep['n_left_out']} left out; report in {out}")
        gated = rep.get("speech_gated") or {}
        if gated.get("auc_speech") is not None:
            print(f"speech-gated AUC {gated['auc_speech']:.4f} on {gated['n']} items with speech "
                  f"(paper's score on them {gated['auc_score_same_items']:.4f}); {gated['n_no_speech']} without speech")
        if args.html is not None:
            write_html(args, list(records.values()), Path(args.html or out / "index.html"), run_info)
        return 0


def write_html(args: argparse.Namespace, records: list[ScoreRecord], index: Path, run_info: dict) -> None:
    """The index page, after the packs of ``--worst``/``--pack`` (in ``packs/`` beside it)."""
    packs = index.parent / "packs"
    if args.checkpoint:
        try:
            chosen = chosen_items(records, args.pack, args.worst)
            layer = args.layer if args.layer is not None else run_info.get("layer")
            scorer = pack_scorer(args.checkpoint, chosen, layer, args.cpu)
        except (OSError, ValueError, pickle.UnpicklingError) as err:
            raise SystemExit(f"error: {err}") from err
        written = write_packs(scorer, chosen, packs)
        print(f"wrote {len(written)} of {len(chosen)} evidence packs to {packs}")
    path = write_index(index, records, packs, args.title, args.n_boot)
    print(f"wrote {path} ({len(records)} items)")


if __name__ == "__main__":
    raise SystemExit(main())
