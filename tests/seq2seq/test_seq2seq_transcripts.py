"""preprocess.transcripts: SentencePiece model with fairseq's special ids, dict.wrd.txt in piece-id
order, .wrd files in manifest order, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm
from fairseq.data import Dictionary

from sf_fairseq.data.manifest import ManifestItem, read_label_lines, write_manifest
from sf_fairseq.preprocess.transcript_targets import build_targets, read_transcripts
from sf_fairseq.preprocess.transcripts import main

TEXTS = {
    "spk1/a": "The quick brown fox",
    "spk1/b": "jumps over the lazy dog",
    "spk2/c": "a quick brown dog jumps",
    "spk2/d": "over the fox",
    "spk3/e": "the lazy   fox",
}


def _write(root: Path, splits: dict[str, list[str]], texts: dict[str, str] = TEXTS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        write_manifest(root / f"{split}.tsv", str(root),
                       [ManifestItem(i, f"{i}.mp4", f"{i}.wav", 25, 16000) for i in ids])
    path = root / "list.txt"
    path.write_text("".join(f"{k}\t{v}\n" for k, v in texts.items()), encoding="utf-8")
    return path


def test_targets_line_up_with_manifests_and_fairseq_ids(tmp_path: Path) -> None:
    transcripts = _write(tmp_path, {"train": ["spk2/c", "spk1/a", "spk1/b", "spk2/d"], "valid": ["spk3/e"]})
    model_path = build_targets(tmp_path, transcripts, ["train", "valid"], vocab_size=40, hard_vocab_limit=False)
    assert model_path == tmp_path / "spm_unigram40.model"
    # Lowercased, whitespace collapsed, in manifest order.
    assert read_label_lines(tmp_path / "train.wrd") == [
        "a quick brown dog jumps", "the quick brown fox", "jumps over the lazy dog", "over the fox"]
    assert read_label_lines(tmp_path / "valid.wrd") == ["the lazy fox"]

    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    assert [processor.id_to_piece(i) for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    dictionary = Dictionary.load(str(tmp_path / "dict.wrd.txt"))
    assert len(dictionary) == processor.get_piece_size()
    # Dictionary index == SentencePiece id for every piece.
    for index in range(4, len(dictionary)):
        assert dictionary[index] == processor.id_to_piece(index)
    pieces = processor.encode("the lazy fox", out_type=str)
    assert dictionary.encode_line(" ".join(pieces), append_eos=False).tolist() == processor.encode("the lazy fox")


def test_cli_reports_items_without_transcripts(tmp_path: Path, caplog) -> None:
    transcripts = _write(tmp_path, {"train": ["spk1/a", "spk9/missing"]})
    assert main(["--data", str(tmp_path), "--transcripts", str(transcripts), "--splits", "train",
                 "--vocab-size", "40", "--soft-vocab-limit"]) == 1
    assert "spk9/missing" in caplog.text and "train.tsv" in caplog.text
    assert not (tmp_path / "train.wrd").exists()


def test_transcript_list_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("a one two\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"list.txt:2"):
        read_transcripts(path)
    path.write_text("a one\na two\n", encoding="utf-8")
    with pytest.raises(ValueError, match="appears twice"):
        read_transcripts(path)


def test_too_large_vocabulary_is_a_clear_error(tmp_path: Path) -> None:
    transcripts = _write(tmp_path, {"train": list(TEXTS)})
    with pytest.raises(ValueError, match="vocabulary size 1000"):
        build_targets(tmp_path, transcripts, ["train"], vocab_size=1000)
