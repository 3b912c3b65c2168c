"""sf-build-transcript-targets with a word-level SentencePiece model (--model-type word): one piece
per word of a closed vocabulary (the lip-reading stage's GRID sentences), dictionary ids = piece ids."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
from fairseq.data import Dictionary

from sf_fairseq.data.manifest import ManifestItem, read_label_lines, write_manifest
from sf_fairseq.preprocess.transcripts import main

TEXTS = {"a": "set blue by f two now", "b": "lay red at a nine soon", "c": "set red at f nine now",
         "d": "place white with z zero again"}


def test_word_model_gives_one_piece_per_word(tmp_path: Path) -> None:
    write_manifest(tmp_path / "train.tsv", str(tmp_path), [ManifestItem(i, f"{i}.mp4", f"{i}.wav", 25, 16000)
                                                           for i in TEXTS])
    transcripts = tmp_path / "list.txt"
    transcripts.write_text("".join(f"{k}\t{v}\n" for k, v in TEXTS.items()), encoding="utf-8")
    assert main(["--data", str(tmp_path), "--transcripts", str(transcripts), "--splits", "train",
                 "--model-type", "word", "--vocab-size", "100", "--soft-vocab-limit"]) == 0
    model = tmp_path / "spm_word100.model"
    processor = spm.SentencePieceProcessor(model_file=str(model))
    assert [processor.id_to_piece(i) for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    words = {w for text in TEXTS.values() for w in text.split()}
    assert processor.get_piece_size() == 4 + len(words)
    assert processor.encode("set red at f nine now", out_type=str) == ["▁set", "▁red", "▁at", "▁f", "▁nine", "▁now"]
    dictionary = Dictionary.load(str(tmp_path / "dict.wrd.txt"))
    assert all(dictionary[i] == processor.id_to_piece(i) for i in range(4, len(dictionary)))
    assert read_label_lines(tmp_path / "train.wrd") == list(TEXTS.values())
