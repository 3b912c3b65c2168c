"""``sf-evidence-index``: the batch index page of score records, with evidence packs of chosen
items. The page and the packs are written by :mod:`.evidence_index`; this module only parses the
command line."""

from __future__ import annotations

import argparse
import pickle

from sf_fairseq._logging import LOG_FORMAT, command_logging
from sf_fairseq.records import RecordError

from .evidence_index import chosen_items, pack_scorer, write_index, write_packs
from .results import latest_records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.evidence_index_cli",
        description="Write a self-contained HTML index of score records (sortable table, AUC per "
        "category with intervals, ROC, histograms) linking to their evidence packs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("results", nargs="+", help="score files (*.jsonl) or folders of them")
    p.add_argument("--out", required=True, help="index HTML file to write")
    p.add_argument("--packs", help="folder of evidence packs named <id>.html (linked when present)")
    p.add_argument("--title", default="Evidence index", help="page title")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the AUC intervals (0: none)")
    packs = p.add_argument_group("evidence packs of chosen items (written to --packs)")
    packs.add_argument("--checkpoint", help="score the chosen items again with this checkpoint (safe loader)")
    packs.add_argument("--layer", type=int, default=None,
                       help="layer the records were scored with (default: their provenance's)")
    packs.add_argument("--pack", action="append", default=[], metavar="ID", help="an item to write a pack for")
    packs.add_argument("--worst", type=int, default=0, metavar="N", help="also the N items with the lowest scores")
    packs.add_argument("--cpu", action="store_true", help="run on CPU even if a GPU is available")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        try:
            records = list(latest_records(args.results).values())
        except (FileNotFoundError, RecordError) as err:
            raise SystemExit(f"error: {err}") from err
        if args.pack or args.worst:
            if not (args.checkpoint and args.packs):
                raise SystemExit("error: --pack/--worst need --checkpoint and --packs")
            try:
                chosen = chosen_items(records, args.pack, args.worst)
                scorer = pack_scorer(args.checkpoint, chosen, args.layer, args.cpu)
            except (OSError, ValueError, pickle.UnpicklingError) as err:
                raise SystemExit(f"error: {err}") from err
            written = write_packs(scorer, chosen, args.packs)
            print(f"wrote {len(written)} of {len(chosen)} evidence packs to {args.packs}")
        path = write_index(args.out, records, args.packs, args.title, args.n_boot)
        print(f"wrote {path} ({len(records)} items)")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
