"""Sequence-to-sequence fine-tuning targets (the engine of ``sf-build-transcript-targets``,
:mod:`.transcripts`): a SentencePiece model, ``dict.wrd.txt`` and
``{split}.wrd`` from a transcript list.

Input: manifests ``{data}/{split}.tsv`` and a transcript list, one utterance per line::

    <item id><TAB or spaces><text>

Output (in ``--out-dir``, default ``--data``)::

    {split}.wrd                 the lowercased transcript of each manifest item, in manifest order
    spm_{type}{V}.model/.vocab  SentencePiece model (unigram by default; ``word`` for a closed
                                vocabulary) trained on the training split(s)
    dict.wrd.txt                fairseq dictionary of the pieces (``piece count``), in
                                SentencePiece id order

SentencePiece ids 0-3 are ``<s> <pad> </s> <unk>``, fairseq's four special symbols, so piece ids
and dictionary indices coincide (as the reference's LRS3 ``spm1000`` model). Fine-tune with
``task.labels=[wrd] task.tokenizer_bpe_name=sentencepiece task.tokenizer_bpe_model=<.model>``;
the model is then saved inside every checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from sf_fairseq.data.manifest import read_manifest, write_label_lines

logger = logging.getLogger(__name__)

SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq's Dictionary order
MODEL_TYPES = ("unigram", "bpe", "word")


def normalize_text(text: str) -> str:
    """Lowercase and collapse whitespace (the reference trains and decodes lowercased text)."""
    return " ".join(text.lower().split())


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """``{item id: normalised text}`` from ``id<TAB or spaces>text`` lines (blank lines skipped).

    Raises:
        ValueError: a line has no text, or an id repeats (naming the file and line).
    """
    transcripts: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = re.split(r"\t|\s+", line.strip(), maxsplit=1)
            if len(parts) < 2 or not parts[1].strip():
                raise ValueError(f"{path}:{number}: expected '<id> <text>', got {line.strip()!r}")
            item_id, text = parts
            if item_id in transcripts:
                raise ValueError(f"{path}:{number}: id {item_id!r} appears twice")
            transcripts[item_id] = normalize_text(text)
    return transcripts


def split_texts(manifest_path: str | os.PathLike, transcripts: dict[str, str]) -> list[str]:
    """The transcript of every item of a manifest, in manifest order.

    Raises:
        KeyError: items without a transcript (the first few are named).
    """
    manifest = read_manifest(manifest_path)
    missing = [item.id for item in manifest.items if item.id not in transcripts]
    if missing:
        raise KeyError(f"{manifest_path}: {len(missing)} items have no transcript, e.g. {missing[:5]}")
    return [transcripts[item.id] for item in manifest.items]


def train_sentencepiece(
    texts: Iterable[str], model_path: str | os.PathLike, vocab_size: int, hard_vocab_limit: bool = True,
    model_type: str = "unigram",
) -> None:
    """Train a SentencePiece model of ``model_type`` (:data:`MODEL_TYPES`; ``word``: one piece
    per word, for a closed vocabulary) with ids 0-3 = ``<s> <pad> </s> <unk>`` and write
    ``model_path`` (``.model``) and its ``.vocab`` atomically."""
    import sentencepiece as spm

    model_path = Path(model_path)
    if model_path.suffix != ".model":
        raise ValueError(f"SentencePiece model path must end in .model: {model_path}")
    with tempfile.TemporaryDirectory(dir=model_path.parent) as tmp:
        corpus = Path(tmp) / "text.txt"
        corpus.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
        prefix = Path(tmp) / model_path.stem
        try:
            spm.SentencePieceTrainer.train(
                input=str(corpus),
                model_prefix=str(prefix),
                model_type=model_type,
                vocab_size=vocab_size,
                character_coverage=1.0,
                bos_id=0,
                pad_id=1,
                eos_id=2,
                unk_id=3,
                hard_vocab_limit=hard_vocab_limit,
                minloglevel=2,
            )
        except RuntimeError as err:
            raise ValueError(
                f"SentencePiece training failed for vocabulary size {vocab_size}: {err} "
                "(it must cover every character + 4 specials and not exceed what the text allows: "
                "adjust --vocab-size, or pass --soft-vocab-limit to accept a smaller vocabulary)"
            ) from err
        for suffix in (".model", ".vocab"):
            os.replace(prefix.with_suffix(suffix), model_path.with_suffix(suffix))


def write_piece_dictionary(
    model_path: str | os.PathLike, texts: Iterable[str], dict_path: str | os.PathLike
) -> int:
    """``dict.wrd.txt``: every non-special piece of the model in id order, with its count in
    ``texts`` (at least 1, so fairseq keeps it). Returns the number of pieces written."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    for index, piece in enumerate(SPECIAL_PIECES):
        if processor.id_to_piece(index) != piece:
            raise ValueError(
                f"{model_path}: id {index} is {processor.id_to_piece(index)!r}, fairseq expects {piece!r}"
            )
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(processor.encode(text, out_type=str))
    pieces = [processor.id_to_piece(i) for i in range(len(SPECIAL_PIECES), processor.get_piece_size())]
    write_label_lines(dict_path, (f"{piece} {max(counts[piece], 1)}" for piece in pieces))
    return len(pieces)


def build_targets(
    data: str | os.PathLike,
    transcripts_path: str | os.PathLike,
    splits: Sequence[str],
    out_dir: str | os.PathLike | None = None,
    train_splits: Sequence[str] = ("train",),
    vocab_size: int = 1000,
    hard_vocab_limit: bool = True,
    model_type: str = "unigram",
) -> Path:
    """Write ``{split}.wrd`` for ``splits``, train the SentencePiece model (``model_type``) on
    ``train_splits`` and write ``dict.wrd.txt``. Returns the SentencePiece model path
    (``spm_{model_type}{vocab_size}.model``)."""
    data, out_dir = Path(data), Path(out_dir or data)
    out_dir.mkdir(parents=True, exist_ok=True)
    transcripts = read_transcripts(transcripts_path)
    texts = {split: split_texts(data / f"{split}.tsv", transcripts)
             for split in dict.fromkeys([*splits, *train_splits])}
    train_texts = [t for split in train_splits for t in texts[split]]
    model_path = out_dir / f"spm_{model_type}{vocab_size}.model"
    train_sentencepiece(train_texts, model_path, vocab_size, hard_vocab_limit, model_type)
    n_pieces = write_piece_dictionary(model_path, train_texts, out_dir / "dict.wrd.txt")
    for split in splits:
        write_label_lines(out_dir / f"{split}.wrd", texts[split])
    logger.info("wrote %s (%d pieces + 4 specials), dict.wrd.txt and .wrd for %s", model_path, n_pieces, list(splits))
    return model_path
