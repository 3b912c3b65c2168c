"""The reference fine-tuned (VSR) fixture: loads through fairseq from the file alone, with a strict
state dict, and reproduces the reference's encoder outputs, teacher-forced decoder logits and
argmax text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sf_fairseq
from sf_fairseq.models.decoder import TransformerDecoder

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def golden(shared_dir: Path) -> dict[str, np.ndarray]:
    return dict(np.load(shared_dir / "fixtures/avhubert_tiny_vsr/golden.npz"))


@pytest.fixture(scope="module")
def loaded(shared_dir: Path):
    from fairseq import checkpoint_utils

    path = shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt"
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)], strict=True)
    return models[0].eval(), cfg, task


def test_loads_from_the_file_alone(loaded) -> None:
    model, cfg, task = loaded
    assert isinstance(model, sf_fairseq.AVHubertSeq2Seq)
    # None of the paths inside the file exist: the encoder came from w2v_args, the dictionary
    # and the SentencePiece model from task_state.
    for path in (cfg.model.w2v_path, cfg.task.tokenizer_bpe_model, cfg.task.label_dir):
        assert not Path(path).exists()
    assert len(task.target_dictionary) == 30
    assert task.s2s_tokenizer.encode("hello") != ""
    assert isinstance(model.decoder, TransformerDecoder)
    assert model.decoder.embed_out is None and model.decoder.layer_norm is not None
    state_keys = set(model.state_dict())
    assert len(state_keys) == 239
    assert "decoder.layers.1.encoder_attn.k_proj.weight" in state_keys
    assert not any(k.startswith("encoder.w2v_model.final_proj") for k in state_keys)


@pytest.fixture(scope="module")
def encoder_out(loaded, golden) -> dict:
    """The encoder wrapper's output (what the decoder and beam search see)."""
    source = {"video": torch.from_numpy(golden["video"]), "audio": None}
    with torch.no_grad():
        return loaded[0].encoder(source, padding_mask=torch.from_numpy(golden["padding_mask"]))


def test_encoder_matches_reference(loaded, golden) -> None:
    model = loaded[0]
    video, padding_mask = torch.from_numpy(golden["video"]), torch.from_numpy(golden["padding_mask"])
    with torch.no_grad():
        out, out_mask = model.encoder.w2v_model.extract_finetune({"video": video, "audio": None}, padding_mask)
    valid = ~padding_mask
    assert torch.equal(out_mask, padding_mask)
    np.testing.assert_allclose(
        out[valid].numpy(), golden["encoder_out_video"][valid.numpy()], atol=TOLERANCE, rtol=0
    )


def test_decoder_logits_and_text_match_reference(loaded, golden, encoder_out) -> None:
    model, _, task = loaded
    assert encoder_out["encoder_out"].shape == (33, 2, 64)
    with torch.no_grad():
        logits, extra = model.decoder(torch.from_numpy(golden["prev_output_tokens"]), encoder_out)
    np.testing.assert_allclose(logits.numpy(), golden["decoder_logits"], atol=TOLERANCE, rtol=0)
    dictionary = task.target_dictionary
    assert [dictionary[i] for i in range(len(dictionary))] == list(golden["target_dictionary"])
    tokens = logits[0].argmax(-1)
    np.testing.assert_array_equal(tokens.numpy(), golden["argmax_tokens_0"])
    pieces = dictionary.string(tokens)
    assert pieces == str(golden["argmax_pieces_0"])
    assert task.s2s_tokenizer.decode(pieces) == str(golden["argmax_text_0"])
    assert len(extra["inner_states"]) == 3  # embeddings + 2 blocks


def test_incremental_decoding_matches_teacher_forcing(loaded, golden, encoder_out) -> None:
    """Step-by-step decoding with attention caches (beam search) gives the same logits."""
    model = loaded[0]
    prev = torch.from_numpy(golden["prev_output_tokens"])
    with torch.no_grad():
        state: dict = {}
        steps = [model.decoder(prev[:, : t + 1], encoder_out, incremental_state=state)[0] for t in range(prev.size(1))]
    np.testing.assert_allclose(torch.cat(steps, 1).numpy(), golden["decoder_logits"], atol=TOLERANCE, rtol=0)


def test_older_file_layouts_load_strictly(shared_dir: Path, tmp_path: Path, loaded) -> None:
    """Files written by older fairseq (a ``decoder.embed_positions._float_tensor`` buffer) or
    whose task_state lacks the pretraining dictionaries (the unused label embeddings then take
    their size from the weights) load with a strict state dict."""
    from fairseq import checkpoint_utils

    from sf_fairseq.checkpoint import load_state

    state = load_state(shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt")
    del state["task_state"]["dictionaries"]
    state["model"]["decoder.embed_positions._float_tensor"] = torch.zeros(1)
    path = tmp_path / "no_dictionaries.pt"
    torch.save(state, path)
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)], strict=True)
    weight = models[0].encoder.w2v_model.label_embs_concat
    assert weight.shape == (14, 32)
    assert torch.equal(weight, loaded[0].encoder.w2v_model.label_embs_concat)
