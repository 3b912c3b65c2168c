"""``sf-cluster-iteration``: one iteration of AV-HuBERT's target refinement for a manifest
directory. The options build an :class:`.iteration_engine.IterationConfig`; the work (outputs,
reuse of finished steps, sharding) is :class:`.iteration_engine.Iteration`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sf_fairseq._logging import TIMED_LOG_FORMAT, command_logging

from .iteration_engine import LABEL_RATES, Iteration, IterationConfig, IterationError

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sf_fairseq.preprocess.iteration",
        description="One iteration of AV-HuBERT target refinement for a manifest directory:\n"
        "dump features (MFCC, or layer L of a checkpoint), fit mini-batch k-means on a sample,\n"
        "label every frame, and write {split}.tsv, {split}.{label}, dict.{label}.txt and\n"
        "{label}.iteration.json (label_rate, K, source) into OUT_DIR, ready for\n"
        "fairseq-hydra-train with task.data=OUT_DIR task.label_dir=OUT_DIR.\n"
        "Finished steps are reused when the command is run again.",
        epilog="examples:\n"
        "  iteration 1:\n"
        "    %(prog)s data/433h --out-dir labels/it1 --feature mfcc --n-clusters 100\n"
        "  iteration 2, from the model trained on iteration 1's labels:\n"
        "    %(prog)s data/433h --out-dir labels/it2 --feature model \\\n"
        "        --checkpoint it1/checkpoint_last.pt --layer 9 --n-clusters 100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest_dir", type=Path, metavar="MANIFEST_DIR",
                        help="directory of {split}.tsv manifests")
    parser.add_argument("--out-dir", type=Path, required=True, metavar="OUT_DIR",
                        help="label directory to write (may be MANIFEST_DIR itself)")
    parser.add_argument("--feature", choices=sorted(LABEL_RATES), required=True,
                        help="mfcc: 39-d MFCC, labels at 100 Hz (iteration 1); model: encoder "
                        "features of --checkpoint, labels at 25 Hz (later iterations)")
    parser.add_argument("--checkpoint", type=Path, metavar="PATH",
                        help="AV-HuBERT checkpoint, pretrained or fine-tuned (--feature model)")
    parser.add_argument("--layer", type=int, metavar="L",
                        help="transformer block whose output is clustered, 1-based; 0 = fused "
                        "front end (--feature model; the reference used 9 after iteration 1, "
                        "then 12)")
    parser.add_argument("--n-clusters", type=int, required=True, metavar="K",
                        help="number of clusters: label ids 0..K-1")
    parser.add_argument("--label-name", metavar="NAME",
                        help="label extension (default: mfcc or km, by --feature)")
    parser.add_argument("--splits", nargs="+", metavar="SPLIT",
                        help="splits to label (default: every *.tsv in MANIFEST_DIR)")
    parser.add_argument("--fit-split", metavar="SPLIT",
                        help="split k-means is fitted on (default: train, if labelled)")
    parser.add_argument("--percent", type=float, default=0.1,
                        help="fraction of each shard's utterances k-means is fitted on; "
                        "negative for all (default: 0.1)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the sample and of k-means (default: 0)")
    parser.add_argument("--nshard", type=int, default=1, metavar="N",
                        help="feature shards per split (default: 1)")
    parser.add_argument("--rank", type=int, metavar="R",
                        help="only dump the features of shard R, then stop (one task of a job "
                        "array; run again without --rank to finish)")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="intermediate files: features, k-means model, label shards "
                        "(default: OUT_DIR/{label}_work)")
    parser.add_argument("--device", default="cpu",
                        help="torch device for model features, e.g. cuda (default: cpu)")
    parser.add_argument("--batch-frames", type=int, default=1000, metavar="N",
                        help="padded video frames per forward pass; clips of similar length share a "
                             "batch (default: 1000)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="threads decoding clips ahead of the model (default: 2)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow arbitrary pickled objects when loading the checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo steps recorded with other settings instead of failing")
    km = parser.add_argument_group("k-means (defaults are the reference's)")
    km.add_argument("--kmeans-batch-size", type=int, default=10000, metavar="N",
                    help="mini-batch size (default: 10000)")
    km.add_argument("--kmeans-max-iter", type=int, default=100, metavar="N",
                    help="passes over the sample (default: 100)")
    km.add_argument("--kmeans-n-init", type=int, default=20, metavar="N",
                    help="k-means++ initialisations tried (default: 20)")
    km.add_argument("--kmeans-max-no-improvement", type=int, default=100, metavar="N",
                    help="early stop after N batches without improvement (default: 100)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(TIMED_LOG_FORMAT):
        try:
            cfg = IterationConfig(**vars(args))
            Iteration(cfg).run()
        except (IterationError, ValueError, OSError) as err:  # bad input: the message names it
            logger.error("%s", err)
            return 1
        if cfg.rank is not None:
            logger.info("features of shard %d/%d done; run again without --rank to finish",
                        cfg.rank, cfg.nshard)
            return 0
        logger.info(
            "labels in %s: train with task.data=%s task.label_dir=%s task.labels=[%s] "
            "task.label_rate=%d (K=%d)", cfg.out_dir, cfg.out_dir, cfg.out_dir, cfg.label_name,
            cfg.label_rate, cfg.n_clusters,
        )
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
