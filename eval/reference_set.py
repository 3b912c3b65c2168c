"""Build a reference set of real-clip scores for conformal p-values (:mod:`.conformal`).

Example::

    # score a batch of videos known to be real, then
    sf-reference-set out/real_batch/ --out reference.json --group-by language

Reads score records (JSONL files or directories of them, as written by ``sf-score-batch``; the
last record per id counts) and keeps one score per clip. Only clips that are scored
(``status`` ok), labelled real (``label`` 1) and free of input reasons (too little speech,
silent audio, ...: the clips the verdict would not judge) enter; every other record is left
out and counted by reason. All kept records must come from one checkpoint, layer and set of
scoring settings (their provenance); mixing them is refused. ``--group-by`` keeps one set per
value of a record field (``category``, a ``language`` or ``source`` field added to the list,
...). Prints the size of each group and the smallest p-value it can reach.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sf_fairseq._logging import LOG_FORMAT, command_logging

from .conformal import DEFAULT_ALPHA, SCORE_FIELDS, build_reference_set, min_reference_size
from .results import latest_records, result_files
from .verdict import INPUT_REASONS

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sf-reference-set",
        description="Build a real-only reference set (JSON) of clip scores from score records, for "
        "the conformal p-values of the verdict.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("records", nargs="+", help="score JSONL files or directories of them (real videos)")
    p.add_argument("--out", required=True, help="reference set JSON to write")
    p.add_argument("--score-field", default="score_speech", choices=SCORE_FIELDS,
                   help="score_speech: speech-gated score; score: the paper's score. Clips are "
                   "later judged on the same field")
    p.add_argument("--group-by", default=None,
                   help="record field to keep one set per value of (e.g. category, language, source)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="level to check each group's size against (a group needs n + 1 > 1/alpha)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        try:
            files = result_files(args.records)
            records = latest_records(files).values()
            reference = build_reference_set(records, args.score_field, args.group_by, INPUT_REASONS,
                                            [str(f) for f in files])
        except (OSError, ValueError) as err:
            print(f"error: {err}")
            return 2
        reference.save(args.out)
        needed = min_reference_size(args.alpha)
        for group, scores in sorted(reference.groups.items()):
            warn = "" if len(scores) >= needed else f"  (too small for alpha={args.alpha:g}: needs {needed})"
            print(f"group {group!r}: {len(scores)} real clips, smallest p-value {1 / (len(scores) + 1):.4g}{warn}")
        for why, n in sorted(reference.refused.items()):
            print(f"left out ({why}): {n}")
        print(f"wrote {args.out}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
