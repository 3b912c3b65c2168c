"""eval.transcribe: edit distances and WER, beam search against a hand-written greedy decoder,
batched decoding with padding, one-clip and manifest CLIs (on the reference VSR fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sf_fairseq.eval.transcribe import main
from sf_fairseq.eval.transcriber import (
    ClipTranscripts,
    DecodeSettings,
    Transcriber,
    disagreement,
    edit_distance,
    word_error_rate,
)
from sf_test_media import write_corpus

# Two intra-op threads for these tests, put back after the module (was a module-level set_num_threads).
pytestmark = pytest.mark.usefixtures("two_torch_threads")


def test_edit_distances_and_wer() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1
    assert disagreement("a b c".split(), "a x c d".split()) == pytest.approx(2 / 4)
    assert disagreement([], []) == 0.0
    # 1 substitution + 1 deletion over 5 reference words.
    assert word_error_rate(["the cat sat", "on mats"], ["the hat sat", "on"]) == pytest.approx(2 / 5)
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])
    result = ClipTranscripts.compare("go stop", "go stop now")
    assert result.word_disagreement == pytest.approx(1 / 3)
    assert result.char_disagreement == pytest.approx(3 / 9)


@pytest.fixture(scope="module")
def transcriber(shared_dir: Path) -> Transcriber:
    return Transcriber.from_checkpoint(shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt",
                                       DecodeSettings(beam=1, max_len_a=0, max_len_b=6))


@pytest.fixture(scope="module")
def golden(shared_dir: Path) -> dict[str, np.ndarray]:
    return dict(np.load(shared_dir / "fixtures/avhubert_tiny_vsr/golden.npz"))


def _greedy(model, video: torch.Tensor, steps: int, pad: int, eos: int) -> list[int]:
    """Greedy decoding by teacher forcing the growing prefix (fairseq's rules: never pad, no EOS
    at the first step, EOS forced at the last)."""
    tokens = [eos]
    with torch.no_grad():
        encoder_out = model.encoder({"video": video, "audio": None})
        for step in range(steps + 1):
            logits = model.decoder(torch.tensor([tokens]), encoder_out)[0][0, -1]
            logits[pad] = -float("inf")
            if step == 0:
                logits[eos] = -float("inf")
            token = eos if step == steps else int(logits.argmax())
            tokens.append(token)
            if token == eos:
                break
    return tokens[1:]


def test_beam_one_equals_greedy_and_batching_does_not_change_results(transcriber, golden) -> None:
    video = torch.from_numpy(golden["video"])
    mask = torch.from_numpy(golden["padding_mask"])
    dictionary = transcriber.dictionary
    expected = []
    for row, frames in enumerate((33, 25)):
        tokens = _greedy(transcriber.model, video[row : row + 1, :, :frames], 6, dictionary.pad(), dictionary.eos())
        expected.append(transcriber.to_text(torch.tensor(tokens)))
    batched = transcriber.decode({"video": video, "audio": None}, mask)
    assert batched == expected
    assert transcriber.decode({"video": video[1:, :, :25], "audio": None}, None) == expected[1:]


def test_one_clip_and_manifest_clis(tmp_path: Path, shared_dir: Path, capsys) -> None:
    checkpoint = str(shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt")
    data = write_corpus(tmp_path / "data", {"test": 2}, frames=(20, 26))
    media = data / "media"
    options = ["--beam", "2", "--max-len-a", "0", "--max-len-b", "5", "--device", "cpu"]
    clip = ["--video", str(media / "test_000.mp4"), "--audio", str(media / "test_000.wav")]
    assert main([checkpoint, *clip, "--json", *options]) == 0
    one = json.loads(capsys.readouterr().out)
    assert set(one) == {"lips", "audio", "word_disagreement", "char_disagreement"}
    assert one == json.loads(json.dumps(ClipTranscripts.compare(one["lips"], one["audio"]).__dict__))

    references = data / "test.wrd"
    references.write_text("s s\nl s s\n", encoding="utf-8")
    output = tmp_path / "hypos.jsonl"
    assert main([checkpoint, "--manifest", str(data / "test.tsv"), "--references", str(references),
                 "--streams", "video", "av", "--output", str(output), *options]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["test_000", "test_001"]
    assert [r["ref"] for r in records] == ["s s", "l s s"]
    # The lips transcript of the manifest run is the one-clip CLI's.
    assert records[0]["video"] == one["lips"]
    wer = word_error_rate([r["ref"] for r in records], [r["video"] for r in records])
    assert f"video: WER {100 * wer:.2f}% over 2 utterances" in printed
    assert "av: WER" in printed


def test_cli_rejects_ambiguous_input(shared_dir: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt"), "--video", "v.mp4"])
