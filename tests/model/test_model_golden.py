"""The reference AV-HuBERT fixture: loads through fairseq with a strict state dict and reproduces
every golden output of the reference code on non-padded frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sf_fairseq  # noqa: F401  (registers the task and model)
from sf_fairseq.checkpoint import load_encoder

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def golden(shared_dir: Path) -> dict[str, np.ndarray]:
    return dict(np.load(shared_dir / "fixtures/avhubert_tiny/golden.npz"))


@pytest.fixture(scope="module")
def fairseq_model(shared_dir: Path):
    from fairseq import checkpoint_utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt")], strict=True
    )
    return models[0].eval(), cfg, task


def _inputs(golden):
    return (torch.from_numpy(golden["video"]), torch.from_numpy(golden["audio"]),
            torch.from_numpy(golden["padding_mask"]))


def test_loaded_through_fairseq_with_task_state(fairseq_model) -> None:
    model, cfg, task = fairseq_model
    assert isinstance(model, sf_fairseq.AVHubertModel)
    assert [len(d) for d in task.dictionaries] == [14]  # from task_state: label_dir does not exist
    assert cfg.task.label_dir == "/nonexistent/lrs3/433h_data"
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 11_337_416


@pytest.mark.parametrize("stream", ["v", "a", "av"])
@pytest.mark.parametrize("layer_name,layer", [("layerlast", None), ("layer1", 1)])
def test_extract_finetune_matches_reference(fairseq_model, golden, stream, layer_name, layer) -> None:
    model = fairseq_model[0]
    video, audio, padding_mask = _inputs(golden)
    source = {"video": video if "v" in stream else None, "audio": audio if "a" in stream else None}
    with torch.no_grad():
        out, out_mask = model.extract_finetune(source, padding_mask, output_layer=layer)
    expected = golden[f"out_{stream}_{layer_name}"]
    valid = ~padding_mask
    assert torch.equal(out_mask, padding_mask)
    np.testing.assert_allclose(out[valid].numpy(), expected[valid.numpy()], atol=TOLERANCE, rtol=0)


def test_logits_match_reference(fairseq_model, golden) -> None:
    model = fairseq_model[0]
    video, audio, padding_mask = _inputs(golden)
    with torch.no_grad():
        x, _ = model.extract_finetune({"video": video, "audio": audio}, padding_mask)
        logits = torch.stack(model.compute_all_logits(x))
    assert logits.shape[-1] == int(golden["num_classes"][0])
    valid = ~padding_mask.numpy()
    np.testing.assert_allclose(logits.numpy()[:, valid], golden["logits_all_frames"][:, valid], atol=TOLERANCE, rtol=0)


def test_extract_features_equals_extract_finetune_with_both_streams(fairseq_model, golden) -> None:
    model = fairseq_model[0]
    video, audio, padding_mask = _inputs(golden)
    with torch.no_grad():
        features, _ = model.extract_features({"video": video, "audio": audio}, padding_mask, output_layer=1)
    valid = ~padding_mask
    np.testing.assert_allclose(features[valid].numpy(), golden["out_av_layer1"][valid.numpy()], atol=TOLERANCE, rtol=0)


def test_finetuned_file_encoder_matches_reference(shared_dir: Path) -> None:
    golden = np.load(shared_dir / "fixtures/avhubert_tiny_vsr/golden.npz")
    model, task_cfg = load_encoder(shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt")
    assert model.final_proj is None
    assert task_cfg["image_crop_size"] == 88
    video = torch.from_numpy(golden["video"])
    padding_mask = torch.from_numpy(golden["padding_mask"])
    with torch.no_grad():
        out, _ = model.extract_finetune({"video": video, "audio": None}, padding_mask)
    valid = ~padding_mask
    np.testing.assert_allclose(out[valid].numpy(), golden["encoder_out_video"][valid.numpy()], atol=TOLERANCE, rtol=0)


def test_pretrained_encoder_loader_equals_fairseq_path(fairseq_model, shared_dir: Path, golden) -> None:
    model, _ = load_encoder(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt")
    video, audio, padding_mask = _inputs(golden)
    with torch.no_grad():
        a, _ = model.extract_finetune({"video": None, "audio": audio}, padding_mask)
        b, _ = fairseq_model[0].extract_finetune({"video": None, "audio": audio}, padding_mask)
    assert torch.equal(a, b)
