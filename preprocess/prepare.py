"""``sf-prepare``: raw videos → mouth ROIs, wavs, landmarks, status records and a manifest.

The command's options build a :class:`.prepare_engine.PrepareJob`; the work (outputs, statuses,
reruns, pipeline per video) is :func:`.prepare_engine.run`, documented in
:mod:`.prepare_engine`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sf_fairseq._logging import LOG_FORMAT, command_logging

from .prepare_engine import SETTINGS_FILE, STATUSES, PrepareError, add_prepare_options, job_from_arguments, run

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sf_fairseq.preprocess.prepare",
        description=(
            "Raw videos -> 96x96 mouth-ROI videos at 25 fps, 16 kHz mono wavs, landmarks, "
            "status records and an AV-HuBERT manifest <split>.tsv. Reruns with the same "
            "settings skip finished, unchanged inputs; reruns with other settings are refused "
            "(see --overwrite)."
        ),
        epilog=(
            "Outputs under OUT_DIR: video/<id>.mp4 (video/<id>__track<k>.mp4 with several "
            "faces), audio/<id>.wav, landmarks/<id>.npz, status/<id>.json, <split>.tsv, "
            f"<split>.log.jsonl (this run's records), {SETTINGS_FILE}. Statuses: "
            + ", ".join(STATUSES) + ". Exit status 1 if any input is not ok, 2 on a usage "
            "error or refused settings. With --nshard N run ranks 0..N-1 (e.g. a job array); "
            "each writes the manifest of every item finished so far, so the last to end writes "
            "the full one (or rerun any rank with --manifest-only)."
        ),
    )
    parser.add_argument("inputs", help="directory searched recursively for videos, or a list "
                        "file with one video path per line")
    parser.add_argument("out_dir", help="output folder (if inside the input directory, it is "
                        "not searched)")
    add_prepare_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        try:
            return run(job_from_arguments(args.inputs, args.out_dir, args)).exit_status
        except PrepareError as err:
            logger.error("%s", err)
            return 2


if __name__ == "__main__":
    sys.exit(main())
