"""Building av_hubert_seq2seq from a pretrained file, decoder variants (pre/post-LN, sinusoidal or
learned positions, tied or separate output projection, video or audio-visual input): each builds,
trains a step, saves and loads back from its saved config alone; freeze_finetune_updates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fairseq.data import Dictionary
from omegaconf import OmegaConf

import sf_fairseq
from sf_fairseq.checkpoint import load_state
from sf_fairseq.tasks.av_hubert_pretraining import AVHubertPretrainingConfig, AVHubertPretrainingTask

# Two intra-op threads for these tests, put back after the module (was a module-level set_num_threads).
pytestmark = pytest.mark.usefixtures("two_torch_threads")
PIECES = ["▁a", "▁b", "c", "d", "e"]


def _task() -> AVHubertPretrainingTask:
    cfg = AVHubertPretrainingConfig(data="/nonexistent", labels=["wrd"], fine_tuning=True, is_s2s=True)
    task = AVHubertPretrainingTask(cfg)
    dictionary = Dictionary()
    for piece in PIECES:
        dictionary.add_symbol(piece)
    task.load_state_dict({"target_dictionary": dictionary, "s2s_tokenizer": None})
    return task


def _model_cfg(w2v_path: str, **overrides):
    fields = dict(
        w2v_path=w2v_path, normalize=True, data="/nonexistent", decoder_embed_dim=32, decoder_ffn_embed_dim=64,
        decoder_layers=2, decoder_attention_heads=4, decoder_normalize_before=True,
        share_decoder_input_output_embed=True, layerdrop=0.0,
    )
    fields.update(overrides)
    cfg = OmegaConf.structured(sf_fairseq.AVHubertSeq2SeqConfig(**fields))
    cfg._name = "av_hubert_seq2seq"
    return cfg


def _batch(with_audio: bool, frames: int = 6):
    generator = torch.Generator().manual_seed(0)
    source = {
        "video": torch.randn(2, 1, frames, 32, 32, generator=generator),  # small crops: the ResNet pools adaptively
        "audio": torch.randn(2, 104, frames, generator=generator) if with_audio else None,
    }
    padding_mask = torch.zeros(2, frames, dtype=torch.bool)
    padding_mask[1, -2:] = True
    prev = torch.tensor([[2, 4, 5, 6], [2, 7, 8, 1]])
    target = torch.tensor([[4, 5, 6, 2], [7, 8, 2, 1]])
    return source, padding_mask, prev, target


@pytest.fixture(scope="module")
def pretrained_path(shared_dir: Path) -> str:
    return str(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt")


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant,overrides,with_audio",
    [
        ("pre-LN tied sinusoidal, video", {}, False),
        ("post-LN, learned positions", {"decoder_normalize_before": False, "decoder_learned_pos": True}, False),
        ("separate output projection, audio-visual", {"share_decoder_input_output_embed": False}, True),
    ],
)
def test_variant_trains_saves_and_loads_back(pretrained_path, variant, overrides, with_audio) -> None:
    task = _task()
    cfg = _model_cfg(pretrained_path, **overrides)
    model = task.build_model(cfg)
    keys = set(model.state_dict())
    assert ("decoder.layer_norm.weight" in keys) == cfg.decoder_normalize_before
    assert ("decoder.embed_positions.weight" in keys) == cfg.decoder_learned_pos
    assert ("decoder.embed_out" in keys) == (not cfg.share_decoder_input_output_embed)
    # The encoder is the pretrained one (all but the masked-prediction head).
    pretrained = load_state(pretrained_path)["model"]
    torch.testing.assert_close(model.encoder.w2v_model.post_extract_proj.weight, pretrained["post_extract_proj.weight"])
    assert model.encoder.w2v_model.final_proj is None
    # The pretraining config went into the model config (and so into saved files).
    assert cfg.w2v_args["model"]["encoder_embed_dim"] == 64

    source, padding_mask, prev, target = _batch(with_audio)
    model.train()
    logits, _ = model(source=source, padding_mask=padding_mask, prev_output_tokens=prev)
    assert logits.shape == (2, 4, len(task.target_dictionary))
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=1)
    loss.backward()
    before = model.decoder.layers[0].fc1.weight.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model.decoder.layers[0].fc1.weight)
    assert model.encoder.w2v_model.encoder.layers[0].fc1.weight.grad is not None

    # Save, then rebuild from the saved config alone (w2v_path now points nowhere).
    saved_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    saved_cfg.w2v_path = "/nonexistent/pretrained.pt"
    reloaded = _task().build_model(saved_cfg)
    reloaded.load_state_dict(model.state_dict(), strict=True)
    model.eval(), reloaded.eval()
    with torch.no_grad():
        expected, _ = model(source=source, padding_mask=padding_mask, prev_output_tokens=prev)
        actual, _ = reloaded(source=source, padding_mask=padding_mask, prev_output_tokens=prev)
    torch.testing.assert_close(actual, expected)


def test_freeze_finetune_updates_keeps_the_encoder_out_of_the_graph(pretrained_path) -> None:
    model = _task().build_model(_model_cfg(pretrained_path, freeze_finetune_updates=2)).train()
    source, padding_mask, prev, target = _batch(False)
    encoder_param = model.encoder.w2v_model.encoder.layers[0].fc1.weight
    for updates, encoder_trains in [(0, False), (1, False), (2, True)]:
        model.set_num_updates(updates)
        model.zero_grad(set_to_none=True)
        logits, _ = model(source=source, padding_mask=padding_mask, prev_output_tokens=prev)
        logits.logsumexp(-1).mean().backward()
        assert model.decoder.layers[0].fc1.weight.grad is not None
        assert (encoder_param.grad is not None) == encoder_trains, updates


def test_w2v_path_must_be_a_pretrained_checkpoint(shared_dir: Path) -> None:
    vsr = str(shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt")
    with pytest.raises(ValueError, match="pretrained AV-HuBERT checkpoint"):
        _task().build_model(_model_cfg(vsr))


def test_normalize_must_match_pretraining(pretrained_path) -> None:
    with pytest.raises(ValueError, match="normalize"):
        _task().build_model(_model_cfg(pretrained_path, normalize=False))
