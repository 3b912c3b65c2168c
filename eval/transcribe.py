"""``sf-transcribe``: decode clips with a fine-tuned AV-HuBERT (``av_hubert_seq2seq``) checkpoint,
the lips-only and audio-only transcripts of one clip and their disagreement, or a manifest's
transcripts and word error rates. The transcriber is :mod:`.transcriber`.

CLI::

    python -m sf_fairseq.eval.transcribe CKPT --video ROI.mp4 --audio clip.wav [--json]
    python -m sf_fairseq.eval.transcribe CKPT --manifest data/test.tsv [--references data/test.wrd]
        [--streams video audio av] [--output hypos.jsonl]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from typing import Any, Iterable

import torch

from sf_fairseq._logging import LOG_FORMAT, command_logging
from sf_fairseq.data.manifest import read_label_lines
from sf_fairseq.resume import atomic_path

from .transcriber import STREAMS, DecodeSettings, Transcriber, transcribe_manifest, word_error_rate

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sf_fairseq.eval.transcribe",
        description=(
            "Decode clips with a fine-tuned AV-HuBERT checkpoint (beam search). For one clip "
            "(--video/--audio): the lips-only and audio-only transcripts and their word/character "
            "disagreement. For a manifest (--manifest): transcripts of the chosen streams and, with "
            "--references, the word error rate of each."
        ),
    )
    parser.add_argument("checkpoint", help="fine-tuned av_hubert_seq2seq checkpoint (an AVSR model for both streams)")
    parser.add_argument("--video", help="mouth-ROI video of one clip (with --audio)")
    parser.add_argument("--audio", help="16 kHz mono wav of the clip (with --video)")
    parser.add_argument("--manifest", help="{split}.tsv manifest to decode instead of one clip")
    parser.add_argument("--references", help="reference transcripts, one line per manifest item ({split}.wrd)")
    parser.add_argument("--streams", nargs="+", choices=STREAMS, default=["video", "audio"],
                        help="streams to decode a manifest from (default: video audio)")
    parser.add_argument("--output", help="write one JSON line per manifest item here")
    parser.add_argument("--json", action="store_true", help="print the one-clip result as JSON")
    parser.add_argument("--beam", type=int, default=DecodeSettings.beam,
                        help="beam size (default: %(default)s; the reference uses 50)")
    parser.add_argument("--lenpen", type=float, default=DecodeSettings.lenpen,
                        help="length penalty (default: %(default)s)")
    parser.add_argument("--max-len-a", type=float, default=DecodeSettings.max_len_a,
                        help="max tokens = a * frames + b (default a: %(default)s)")
    parser.add_argument("--max-len-b", type=int, default=DecodeSettings.max_len_b, help="(default b: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per batch (default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=50.0,
                        help="decode the first seconds of each clip (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: %(default)s)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="unpickle the checkpoint without restrictions (only for files you trust)")
    return parser


def _write_jsonl(path: str, records: Iterable[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with command_logging(LOG_FORMAT):
        one_clip = args.video is not None or args.audio is not None
        if one_clip == (args.manifest is not None) or (one_clip and (args.video is None or args.audio is None)):
            parser.error("give either --video and --audio, or --manifest")
        decode = DecodeSettings(args.beam, args.lenpen, args.max_len_a, args.max_len_b)
        try:
            transcriber = Transcriber.from_checkpoint(args.checkpoint, decode, args.device, args.trust_checkpoint)
            if one_clip:
                result = transcriber.transcribe_clip(args.video, args.audio, args.max_seconds)
                if args.json:
                    print(json.dumps(asdict(result), ensure_ascii=False))
                else:
                    print(f"lips:  {result.lips}\naudio: {result.audio}\n"
                          f"word disagreement: {result.word_disagreement:.3f}  "
                          f"character disagreement: {result.char_disagreement:.3f}")
                return 0
            references = read_label_lines(args.references) if args.references else None
            records = transcribe_manifest(transcriber, args.manifest, args.streams, references, args.batch_size,
                                          args.max_seconds)
        except (OSError, ValueError) as err:
            logger.error("%s", err)
            return 1
        if args.output:
            _write_jsonl(args.output, records)
        if references is not None:
            for stream in args.streams:
                wer = word_error_rate([r["ref"] for r in records], [r[stream] for r in records])
                print(f"{stream}: WER {100 * wer:.2f}% over {len(records)} utterances")
        elif not args.output:
            for record in records:
                print(json.dumps(record, ensure_ascii=False))
        return 0


if __name__ == "__main__":
    sys.exit(main())
