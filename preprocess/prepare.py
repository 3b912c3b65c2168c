"""``sf-prepare``: raw videos → mouth ROIs, wavs, landmarks, status records and a manifest.

The command's options build a :class:`.prepare_engine.PrepareJob`; the work (outputs, statuses,
reruns, pipeline per video) is :func:`.prepare_engine.run`, documented in
:mod:`.prepare_engine`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .prepare_engine import SETTINGS_FILE, STATUSES, PrepareError, PrepareJob, PrepareOptions, run

# The engine's names that modules written before prepare_engine import from this command
# (score_ray, benchmark, encode, ray_pipeline): new code imports them from prepare_engine.
from .prepare_engine import (  # noqa: F401
    InputItem,
    VideoPreprocessor,
    discover_inputs,
    input_identity,
    prepare_output_folder,
    process_items,
    read_status,
    settings_fingerprint,
    write_split_manifest,
)

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
    parser.add_argument("--root", help="folder that relative paths in a list file (and output "
                        "ids) are relative to (default: the list file's folder)")
    parser.add_argument("--split", default="test", help="manifest name: <split>.tsv "
                        "(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes "
                        "(default: %(default)s)")
    parser.add_argument("--nshard", type=int, default=1, help="split the inputs into this many "
                        "shards (default: %(default)s)")
    parser.add_argument("--rank", type=int, default=0, help="which shard to process, "
                        "0-based (default: %(default)s)")
    parser.add_argument("--detect-every", type=int, default=PrepareOptions.detect_every,
                        help="run the face detector every N frames and follow faces with "
                        "landmarks in between; 1 detects on every frame as the reference "
                        "does (default: %(default)s)")
    parser.add_argument("--detect-size", type=int, default=PrepareOptions.detect_size,
                        help="downscale frames so the longer side is at most this many pixels "
                        "before detection (default: %(default)s)")
    parser.add_argument("--upsample", type=int, default=PrepareOptions.upsample,
                        help="detector pyramid upsamplings; each finds faces half as large "
                        "and costs ~4x (default: %(default)s)")
    parser.add_argument("--cnn-detector", action="store_true", help="where the HOG detector "
                        "finds nothing, try dlib's CNN detector (slow on CPU)")
    parser.add_argument("--min-frames", type=int, default=PrepareOptions.min_frames,
                        help="inputs shorter than this many 25 fps frames are 'too_short' "
                        "(default: %(default)s)")
    parser.add_argument("--min-track-fraction", type=float,
                        default=PrepareOptions.min_track_fraction,
                        help="keep faces followed on at least this fraction of the frames "
                        "(default: %(default)s)")
    parser.add_argument("--retry-failed", action="store_true", help="reprocess inputs whose "
                        "record is not ok (by default only 'error' records are retried)")
    parser.add_argument("--overwrite", action="store_true", help="if OUT_DIR holds outputs "
                        f"made with other settings (see {SETTINGS_FILE}), discard them and "
                        "start again instead of refusing")
    parser.add_argument("--keep-truncated", action="store_true", help="list 'truncated' inputs "
                        "(shorter than their container states, e.g. partial downloads) in the "
                        "manifest with what they hold, instead of leaving them out")
    parser.add_argument("--manifest-only", action="store_true", help="process nothing; "
                        "rewrite <split>.tsv from the records on disk")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # force: importing fairseq installs a DEBUG root handler, which would flood the console.
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    options = PrepareOptions(
        detect_every=args.detect_every,
        detect_size=args.detect_size,
        upsample=args.upsample,
        cnn_detector=args.cnn_detector,
        min_frames=args.min_frames,
        min_track_fraction=args.min_track_fraction,
    )
    job = PrepareJob(
        args.inputs, args.out_dir, root=args.root, split=args.split, workers=args.workers,
        nshard=args.nshard, rank=args.rank, options=options, retry_failed=args.retry_failed,
        overwrite=args.overwrite, keep_truncated=args.keep_truncated, manifest_only=args.manifest_only,
    )
    try:
        return run(job).exit_status
    except PrepareError as err:
        logger.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
