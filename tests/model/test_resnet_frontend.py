"""The lip front end computes what the reference's ``ResEncoder`` layers compute.

Ours runs the 3D stem convolution as an equal 2D convolution over neighbouring frames, the stem
batch norm and max pool on frames folded into the batch, and the trunk channels-last; the
reference runs Conv3d -> BatchNorm3d -> PReLU -> MaxPool3d on the clip. Both must agree, in
training (batch statistics, running-statistics update, gradients) and in evaluation. Compared
in float64: train-mode batch norm over a handful of small frames amplifies float32 rounding in
the gradients to ~1 % whichever way the layers are computed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sf_fairseq.models import resnet
from sf_fairseq.models.resnet import ResEncoder

# The tests seed torch's global RNG (model initialisation and the criteria draw from it).
pytestmark = pytest.mark.usefixtures("restore_torch_rng")


def reference_stem(encoder: ResEncoder) -> nn.Sequential:
    """The reference's layer sequence with our encoder's parameters."""
    conv, norm, activation = encoder.frontend3D
    conv3d = nn.Conv3d(1, 64, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
    norm3d = nn.BatchNorm3d(64)
    conv3d.load_state_dict(conv.state_dict())
    norm3d.load_state_dict(norm.state_dict())
    prelu = nn.PReLU(64)
    prelu.load_state_dict(activation.state_dict())
    return nn.Sequential(conv3d, norm3d, prelu, nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))


def reference_forward(encoder: ResEncoder, stem: nn.Sequential, video: torch.Tensor) -> torch.Tensor:
    batch, frames = video.shape[0], video.shape[2]
    x = stem(video).transpose(1, 2).flatten(0, 1)
    return encoder.trunk(x.contiguous()).view(batch, frames, -1).transpose(1, 2)


@pytest.mark.parametrize("channel_multiple", [1, 8], ids=["cpu-stem", "cuda-stem-padded-to-8"])
def test_front_end_equals_the_reference_layers_in_training_and_evaluation(
    channel_multiple: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CUDA path (stem input zero-padded to 8 channels) is checked here on the CPU.
    monkeypatch.setattr(resnet, "stem_channel_multiple", lambda video: channel_multiple)
    torch.manual_seed(0)
    encoder = ResEncoder("prelu")
    with torch.no_grad():  # non-trivial batch-norm parameters and running statistics
        for module in encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.1, 0.1)
    stem = reference_stem(encoder)
    encoder.double(), stem.double()
    video = torch.randn(2, 1, 7, 40, 40, dtype=torch.float64, requires_grad=True)

    encoder.train(), stem.train()
    ours = encoder(video)
    ours_grad = torch.autograd.grad(ours.square().sum(), [video, encoder.frontend3D[0].weight])
    reference = reference_forward(encoder, stem, video)
    reference_grad = torch.autograd.grad(reference.square().sum(), [video, stem[0].weight])
    assert ours.shape == (2, 512, 7)
    torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-11)
    for a, b in zip(ours_grad, reference_grad):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    # Running statistics moved the same way (the trunk's are shared, so they moved twice alike).
    torch.testing.assert_close(encoder.frontend3D[1].running_mean, stem[1].running_mean)
    torch.testing.assert_close(encoder.frontend3D[1].running_var, stem[1].running_var)

    encoder.eval(), stem.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(video), reference_forward(encoder, stem, video), rtol=1e-9, atol=1e-11)


def test_state_dict_keys_are_the_reference_names() -> None:
    keys = set(ResEncoder().state_dict())
    assert {"frontend3D.0.weight", "frontend3D.1.weight", "frontend3D.1.running_var",
            "frontend3D.1.num_batches_tracked", "frontend3D.2.weight"} <= keys
    assert ResEncoder().state_dict()["frontend3D.0.weight"].shape == (64, 1, 5, 7, 7)


def test_narrow_front_end_has_the_same_names_and_scaled_widths() -> None:
    wide, narrow = ResEncoder(), ResEncoder(width=16)
    assert set(narrow.state_dict()) == set(wide.state_dict())  # same layers, fewer channels
    assert narrow.output_dim == 128 and wide.output_dim == 512
    assert narrow.state_dict()["trunk.layer4.1.conv2.weight"].shape == (128, 128, 3, 3)
    assert narrow(torch.zeros(2, 1, 7, 48, 48)).shape == (2, 128, 7)
    with pytest.raises(ValueError, match="width"):
        ResEncoder(width=0)


def test_model_with_a_narrow_front_end_saves_and_loads(tmp_path) -> None:
    # resnet_width reaches the front end through the config, and load_encoder rebuilds it from
    # the file alone (checkpoints without the key load with the published 64).
    from sf_fairseq.checkpoint import load_encoder
    from sf_fairseq.models.av_hubert import AVHubertConfig, AVHubertModel

    fields = dict(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
                  final_dim=16, audio_feat_dim=104, label_rate=25)
    model = AVHubertModel(AVHubertConfig(resnet_width=8, **fields), [10], 1.0).eval()
    assert model.feature_extractor_video.resnet.output_dim == 64
    path = tmp_path / "narrow.pt"
    torch.save({"cfg": {"model": {"_name": "av_hubert", "resnet_width": 8, **fields},
                        "task": {"_name": "av_hubert_pretraining", "sample_rate": 25, "label_rate": 25}},
                "model": model.state_dict()}, path)
    loaded, _ = load_encoder(path)
    assert loaded.feature_extractor_video.resnet.output_dim == 64
    video = torch.randn(1, 1, 6, 24, 24)
    with torch.no_grad():
        a, _ = model.extract_finetune({"video": video, "audio": None})
        b, _ = loaded.extract_finetune({"video": video, "audio": None})
    torch.testing.assert_close(a, b)
