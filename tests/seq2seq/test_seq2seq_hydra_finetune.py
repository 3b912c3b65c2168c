"""``fairseq-hydra-train`` fine-tunes the tiny seq2seq config from the tiny pretrained fixture on
generated clips with transcripts; the result loads from the file alone and decodes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sf_fairseq.checkpoint import load_state
from sf_fairseq.eval.transcriber import DecodeSettings, Transcriber
from sf_fairseq.preprocess.transcripts import main as transcripts_main
from seq2seq_corpus import write_transcribed_corpus

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "sf_fairseq" / "config" / "finetune"


@pytest.mark.slow
def test_tiny_finetune_trains_saves_loads_alone_and_decodes(tmp_path: Path, shared_dir: Path) -> None:
    data = tmp_path / "data"
    transcripts = write_transcribed_corpus(data, {"train": 3, "valid": 1})
    assert transcripts_main(["--data", str(data), "--transcripts", str(transcripts),
                             "--vocab-size", "30", "--soft-vocab-limit"]) == 0
    pretrained = shared_dir / "fixtures/avhubert_tiny/checkpoint.pt"
    save_dir = tmp_path / "ckpt"
    command = [
        str(Path(sys.executable).with_name("fairseq-hydra-train")),
        "--config-dir", str(CONFIG_DIR), "--config-name", "tiny_cpu",
        f"task.data={data}", f"task.label_dir={data}", f"task.tokenizer_bpe_model={data / 'spm_unigram30.model'}",
        f"model.w2v_path={pretrained}", f"common.user_dir={REPO / 'user_dir'}", f"checkpoint.save_dir={save_dir}",
        "optimization.max_update=3", "dataset.validate_interval=10",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert "done training" in log and "accuracy" in log

    checkpoint = save_dir / "checkpoint_last.pt"
    state = load_state(checkpoint)
    assert state["optimizer_history"][-1]["num_updates"] == 3
    assert state["cfg"]["model"]["w2v_args"]["model"]["_name"] == "av_hubert"
    assert {"dictionaries", "target_dictionary", "s2s_tokenizer"} <= set(state["task_state"])
    # freeze_finetune_updates=2: the encoder was frozen for 2 updates and trained on the third.
    encoder_weight = state["model"]["encoder.w2v_model.encoder.layers.0.fc1.weight"]
    assert not torch.equal(encoder_weight, load_state(pretrained)["model"]["encoder.layers.0.fc1.weight"])

    # Nothing but the file: no data, labels, SentencePiece model or pretrained checkpoint paths.
    clip = data / "media" / "valid_000"
    moved = tmp_path / "moved"
    shutil.move(str(data), str(moved))
    transcriber = Transcriber.from_checkpoint(checkpoint, DecodeSettings(beam=2))
    result = transcriber.transcribe_clip(
        str(moved / "media" / f"{clip.name}.mp4"), str(moved / "media" / f"{clip.name}.wav")
    )
    assert isinstance(result.lips, str) and isinstance(result.audio, str)
    assert 0.0 <= result.word_disagreement <= 1.0
    assert "\u2581" not in result.lips + result.audio  # pieces were joined into text
