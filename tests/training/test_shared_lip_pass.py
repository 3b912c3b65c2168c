"""``substitute_video_features``: masked video spans substituted in the lip front end's output,
so that ``av_hubert_alignment`` runs the lip ResNet once an update instead of twice."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sf_fairseq.criteria.av_alignment_criterion import AVAlignmentCriterion
from sf_fairseq.models.av_hubert import AVHubertConfig, AVHubertModel

# The tests seed torch's global RNG (masks and model initialisation draw from it).
pytestmark = pytest.mark.usefixtures("restore_torch_rng")

BATCH, FRAMES, SIDE, AUDIO_DIM, CLASSES = 3, 24, 16, 104, 9
LENGTHS = (24, 20, 17)


def tiny_model(substitute: bool, **options: Any) -> AVHubertModel:
    settings = dict(label_rate=25, encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                    encoder_attention_heads=4, final_dim=16, audio_feat_dim=AUDIO_DIM, conv_pos=8,
                    conv_pos_groups=4, mask_prob_audio=0.3, mask_prob_image=0.4, mask_length_audio=3,
                    mask_length_image=3, dropout=0.0, attention_dropout=0.0, resnet_width=4,
                    feature_grad_mult=0.1, selection_type="same_seq", substitute_video_features=substitute)
    settings.update(options)
    torch.manual_seed(0)
    return AVHubertModel.build_random(AVHubertConfig(**settings), num_classes=[CLASSES])


def sample() -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    padding = torch.arange(FRAMES)[None, :] >= torch.tensor(LENGTHS)[:, None]
    video = torch.randn(BATCH, 1, FRAMES, SIDE, SIDE, generator=g).masked_fill(padding[:, None, :, None, None], 0)
    audio = torch.randn(BATCH, AUDIO_DIM, FRAMES, generator=g).masked_fill(padding[:, None, :], 0)
    targets = torch.randint(4, CLASSES, (BATCH, FRAMES), generator=g)
    return {"id": torch.arange(BATCH), "target_list": [targets],
            "net_input": {"source": {"video": video, "audio": audio}, "padding_mask": padding}}


class Recorder:
    """Inputs of the lip ResNet and of the fusion LayerNorm (fused [B, T, 2D] features) per call."""

    def __init__(self, model: AVHubertModel) -> None:
        self.resnet_inputs: list[torch.Tensor] = []
        self.fused: list[torch.Tensor] = []
        model.feature_extractor_video.resnet.register_forward_pre_hook(
            lambda _, args: self.resnet_inputs.append(args[0].detach().clone()))
        model.layer_norm.register_forward_pre_hook(lambda _, args: self.fused.append(args[0].detach().clone()))


def test_features_are_substituted_as_whole_frames_are() -> None:
    # Frame t of clip b holds 1000 * b + t everywhere; as features, it is a D-vector of that value.
    model = tiny_model(substitute=True)
    numbers = 1000.0 * torch.arange(BATCH)[:, None] + torch.arange(FRAMES)[None, :]  # [B, T]
    frames = numbers[:, None, :, None, None].expand(BATCH, 1, FRAMES, 2, 2).contiguous()
    features = numbers[:, None, :].expand(BATCH, 5, FRAMES).contiguous()
    padding = sample()["net_input"]["padding_mask"]
    for seed in range(5):
        torch.manual_seed(seed)
        masked_frames, frame_mask = model.apply_input_mask(frames, padding, "video")
        torch.manual_seed(seed)
        masked_features, feature_mask = model.apply_input_mask(features, padding, "video")
        assert feature_mask.any() and torch.equal(frame_mask, feature_mask)
        assert masked_features.shape == features.shape and not torch.equal(masked_features, features)
        assert torch.equal(masked_features, masked_frames[:, 0, :, 0, 0][:, None, :].expand_as(features))


def test_front_end_sees_the_clean_clip_and_masked_frames_take_other_frames_features() -> None:
    batch = sample()
    source, padding = batch["net_input"]["source"], batch["net_input"]["padding_mask"]
    for substitute in (False, True):
        model = tiny_model(substitute).eval()  # no dropout; masking is on with mask=True
        seen = Recorder(model)
        torch.manual_seed(3)
        model(source, batch["target_list"], padding, mask=True)
        (resnet_input,), (fused,) = seen.resnet_inputs, seen.fused
        if not substitute:
            assert not torch.equal(resnet_input, source["video"]), "the reference masks the frames"
            continue
        assert torch.equal(resnet_input, source["video"]), "one front-end pass, on the unmasked clip"
        with torch.no_grad():
            clean = model.forward_features(source["video"], "video").transpose(1, 2)  # [B, T, D]
        video_half = fused[..., 32:]
        for b, length in enumerate(LENGTHS):
            own = [torch.allclose(video_half[b, t], clean[b, t], atol=1e-6) for t in range(length)]
            assert 0 < own.count(False) < length, "some frames are substituted, not all"
            for t in (t for t in range(length) if not own[t]):
                assert any(torch.allclose(video_half[b, t], clean[b, s], atol=1e-6) for s in range(length) if s != t)


def test_precomputed_video_features_give_the_same_output() -> None:
    batch = sample()
    model = tiny_model(substitute=True).eval()
    net_input = batch["net_input"]
    torch.manual_seed(4)
    own = model(target_list=batch["target_list"], mask=True, **net_input)
    with torch.no_grad():
        features = model.forward_features(net_input["source"]["video"], "video")
    torch.manual_seed(4)
    given = model(target_list=batch["target_list"], mask=True, video_features=features, **net_input)
    for key in ("logit_m_list", "target_m_list", "logit_u_list"):
        assert all(torch.equal(a, b) for a, b in zip(own[key], given[key]))
    video_only, _ = model.extract_finetune({"video": net_input["source"]["video"], "audio": None},
                                           net_input["padding_mask"])
    from_features, _ = model.extract_finetune({"video": None, "audio": None}, net_input["padding_mask"],
                                              video_features=features)
    assert torch.equal(video_only, from_features)


@pytest.mark.parametrize("substitute, resnet_passes", [(False, 2), (True, 1)])
def test_alignment_criterion_runs_the_lip_resnet_once_with_substitution(substitute: bool, resnet_passes: int) -> None:
    model = tiny_model(substitute).train()
    seen = Recorder(model)
    criterion = AVAlignmentCriterion(None, pred_masked_weight=1.0, pred_nomask_weight=0.0, loss_weights=[10.0],
                                     alignment_weight=1.0, alignment_temperature=0.3, alignment_negatives="clip",
                                     alignment_max_shift=3, alignment_clip_weight=2.0)
    for seed in range(3):
        seen.resnet_inputs.clear()
        model.zero_grad()
        torch.manual_seed(seed)
        loss, sample_size, log = criterion(model, sample())
        loss.backward()
        assert len(seen.resnet_inputs) == resnet_passes
        assert sample_size > 0 and log["alignment_frames"] > 0 and torch.isfinite(loss)
        stem = model.feature_extractor_video.resnet.frontend3D[0].weight.grad
        assert stem is not None and torch.isfinite(stem).all() and stem.abs().sum() > 0


def test_video_features_need_the_option() -> None:
    batch = sample()
    model = tiny_model(substitute=False)
    features = torch.zeros(BATCH, 32, FRAMES)
    with pytest.raises(ValueError, match="substitute_video_features"):
        model(target_list=batch["target_list"], video_features=features, **batch["net_input"])
    with pytest.raises(ValueError, match="not both"):
        model.extract_finetune(batch["net_input"]["source"], video_features=features)


@pytest.mark.parametrize("options", [{"masking_type": "feature"}, {"sub_encoder_layers": 1}])
def test_option_refused_where_frames_are_not_substituted_frame_by_frame(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="substitute_video_features"):
        tiny_model(substitute=True, **options)
