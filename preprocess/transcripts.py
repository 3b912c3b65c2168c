"""``sf-build-transcript-targets``: seq2seq fine-tuning targets ({split}.wrd, a SentencePiece model,
dict.wrd.txt) from a transcript list. The options call
:func:`.transcript_targets.build_targets`; formats are described there.
"""

from __future__ import annotations

import argparse
import logging

from sf_fairseq._logging import LOG_FORMAT, command_logging

from .transcript_targets import MODEL_TYPES, build_targets

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sf_fairseq.preprocess.transcripts",
        description=(
            "Build seq2seq fine-tuning targets: {split}.wrd (lowercased transcripts in manifest "
            "order), a SentencePiece model (ids 0-3 = <s> <pad> </s> <unk>) trained on the "
            "training split(s), and its fairseq dictionary dict.wrd.txt."
        ),
    )
    parser.add_argument("--data", required=True, help="directory with the {split}.tsv manifests")
    parser.add_argument("--transcripts", required=True, help="transcript list: '<item id> <text>' per line")
    parser.add_argument("--splits", nargs="+", default=["train", "valid"],
                        help="splits to write .wrd for (default: train valid)")
    parser.add_argument("--train-splits", nargs="+", default=["train"],
                        help="splits the SentencePiece model learns from (default: train)")
    parser.add_argument("--out-dir", help="output directory (default: --data)")
    parser.add_argument("--vocab-size", type=int, default=1000,
                        help="SentencePiece vocabulary incl. the 4 specials (default: 1000, as LRS3)")
    parser.add_argument("--model-type", choices=MODEL_TYPES, default="unigram",
                        help="SentencePiece model type; 'word' gives one piece per word, for a closed "
                        "vocabulary such as GRID sentences (default: unigram)")
    parser.add_argument("--soft-vocab-limit", action="store_true",
                        help="allow a smaller vocabulary when the text is too small for --vocab-size")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        try:
            model_path = build_targets(
                args.data, args.transcripts, args.splits, args.out_dir, args.train_splits,
                args.vocab_size, hard_vocab_limit=not args.soft_vocab_limit, model_type=args.model_type,
            )
        except (OSError, KeyError, ValueError) as err:
            logger.error("%s", err)
            return 1
        print(model_path)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
