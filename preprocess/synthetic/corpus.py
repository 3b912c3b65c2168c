"""``sf-synthetic-corpus``: generate a synthetic talking-face corpus (real training clips, real
and labelled fake test clips). The options build a :class:`.corpus_engine.CorpusJob`; layout,
metadata and resuming are described in :mod:`.corpus_engine`.
"""

from __future__ import annotations

import argparse
import sys

from sf_fairseq._logging import LOG_FORMAT, command_logging

from .clips import GRAMMARS
from .corpus_engine import RECORDED_FRACTION, CorpusError, CorpusJob, generate
from .fakes import CATEGORIES, FAKE_CATEGORIES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sf_fairseq.preprocess.synthetic.corpus",
        description="Generate a synthetic talking-face corpus (espeak-ng or recorded speech, face photos with "
        "phoneme-driven lips): train/ holds real clips, test/ real clips plus every labelled fake "
        f"category ({', '.join(FAKE_CATEGORIES)}). Lists in SpeechForensics format "
        "(<path> <label>, 1 = real), a CSV with categories, JSONL metadata. Reruns skip finished "
        "clips; the same --seed gives the same corpus.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-train", type=int, default=100, help="real training clips (default 100)")
    parser.add_argument("--n-test", type=int, default=20, help="test source clips; each gives one "
                        "real clip and one clip per fake category (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 320), metavar=("W", "H"),
                        help="frame size in pixels (default 320 320)")
    parser.add_argument("--quick", action="store_true", help="short sentences (4–8 words) for "
                        "fast tests and CI")
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=list(CATEGORIES),
                        help="test categories to generate (default: all)")
    parser.add_argument("--recorded-fraction", type=float, default=RECORDED_FRACTION,
                        help="share of source clips that say a shipped real recording (public-"
                        "domain LibriVox excerpts with aligned phones) instead of espeak-ng "
                        f"speech, chosen per clip from the seed (default {RECORDED_FRACTION}; 0 = "
                        "synthetic speech only; ignored with --grammar grid)")
    parser.add_argument("--grammar", choices=GRAMMARS, default="free",
                        help="sentences: 'free' (template sentences over a word list) or 'grid' (closed-"
                        "vocabulary GRID sentences: command colour preposition letter digit adverb, e.g. "
                        "'set blue by f two now', for lip-reading experiments; fakes say other GRID "
                        "sentences). GRID clips are espeak-ng speech only: the shipped recordings do not "
                        "fit the grammar (default: free)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        job = CorpusJob(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                        size=(int(args.size[0]), int(args.size[1])), quick=args.quick,
                        categories=tuple(args.categories), recorded_fraction=args.recorded_fraction,
                        workers=args.workers, grammar=args.grammar)
        try:
            generate(job)
        except CorpusError as err:
            raise SystemExit(str(err)) from None
        return 0


if __name__ == "__main__":
    sys.exit(main())
