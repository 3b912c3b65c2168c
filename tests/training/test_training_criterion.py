"""The ``av_hubert`` criterion against a hand computation, its logged metrics, and the model's
cosine logits."""

from __future__ import annotations

import math
from typing import Any

import torch
from fairseq import metrics

from sf_fairseq.criteria.av_hubert_criterion import AVHubertCriterion
from sf_fairseq.models.av_hubert import AVHubertConfig, AVHubertModel


class FixedOutputModel(torch.nn.Module):
    """Returns a fixed net_output, like AVHubertModel.forward, for any sample."""

    def __init__(self, net_output: dict[str, Any]) -> None:
        super().__init__()
        self.net_output = net_output

    def forward(self, **kwargs: Any) -> dict[str, Any]:
        return self.net_output

    def get_extra_losses(self, net_output: dict[str, Any]) -> tuple[list[torch.Tensor], list[str]]:
        return [net_output["features_pen"]], ["features_pen"]


def _hand_nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Sum over rows of log(sum_j exp(l_j)) - l_target, in float64 with explicit loops."""
    total = 0.0
    for row, target in zip(logits.double().tolist(), targets.tolist()):
        peak = max(row)
        total += peak + math.log(sum(math.exp(v - peak) for v in row)) - row[target]
    return total


def _net_output(seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {
        "logit_m_list": [torch.randn(7, 5, generator=g), torch.randn(7, 9, generator=g)],
        "logit_u_list": [torch.randn(3, 5, generator=g), torch.randn(3, 9, generator=g)],
        "target_m_list": [torch.randint(0, 5, (7,), generator=g), torch.randint(0, 9, (7,), generator=g)],
        "target_u_list": [torch.randint(0, 5, (3,), generator=g), torch.randint(0, 9, (3,), generator=g)],
        "features_pen": torch.tensor(0.37),
    }


def _sample() -> dict[str, Any]:
    return {"id": torch.arange(2), "net_input": {}, "target_list": []}


def test_loss_equals_hand_computation() -> None:
    net = _net_output()
    criterion = AVHubertCriterion(None, pred_masked_weight=1.0, pred_nomask_weight=0.5, loss_weights=[10.0])
    loss, sample_size, log = criterion(FixedOutputModel(net), _sample())
    masked = sum(_hand_nll(l, t) for l, t in zip(net["logit_m_list"], net["target_m_list"]))
    unmasked = sum(_hand_nll(l, t) for l, t in zip(net["logit_u_list"], net["target_u_list"]))
    assert sample_size == 7 + 3  # masked + (weighted) unmasked target frames of the first label set
    expected = masked + 0.5 * unmasked + 10.0 * 0.37 * sample_size
    assert abs(loss.item() - expected) < 1e-4
    assert abs(log["loss_m_1"] - _hand_nll(net["logit_m_list"][1], net["target_m_list"][1])) < 1e-4
    assert abs(log["loss_features_pen"] - 10.0 * 0.37 * 10) < 1e-4
    correct = int((net["logit_m_list"][0].argmax(-1) == net["target_m_list"][0]).sum())
    assert log["correct_m_0"] == correct and log["count_m_0"] == 7 and log["count_u_1"] == 3
    assert log["nsentences"] == 2 and log["sample_size"] == 10


def test_unmasked_frames_do_not_count_with_zero_weight() -> None:
    net = _net_output()
    criterion = AVHubertCriterion(None, pred_masked_weight=1.0, pred_nomask_weight=0.0, loss_weights=None)
    loss, sample_size, _ = criterion(FixedOutputModel(net), _sample())
    masked = sum(_hand_nll(l, t) for l, t in zip(net["logit_m_list"], net["target_m_list"]))
    assert sample_size == 7 and abs(loss.item() - masked) < 1e-4


def test_logged_metrics_sum_across_workers() -> None:
    assert AVHubertCriterion.logging_outputs_can_be_summed()
    criterion = AVHubertCriterion(None, pred_masked_weight=1.0, pred_nomask_weight=0.0, loss_weights=[10.0])
    logs = [criterion(FixedOutputModel(_net_output(seed)), _sample())[2] for seed in (0, 1)]
    with metrics.aggregate() as agg:
        AVHubertCriterion.reduce_metrics(logs)
    values = agg.get_smoothed_values()
    total_size = logs[0]["sample_size"] + logs[1]["sample_size"]
    assert abs(values["loss"] - (logs[0]["loss"] + logs[1]["loss"]) / total_size / math.log(2)) < 1e-3
    correct = logs[0]["correct_m_0"] + logs[1]["correct_m_0"]
    assert abs(values["correct_m_0"] - correct / (logs[0]["count_m_0"] + logs[1]["count_m_0"])) < 1e-6
    # One summed logging output (fairseq's all-reduce) reduces to the same metrics.
    summed = {key: logs[0][key] + logs[1][key] for key in logs[0]}
    with metrics.aggregate() as agg_summed:
        AVHubertCriterion.reduce_metrics([summed])
    assert abs(agg_summed.get_smoothed_values()["loss"] - values["loss"]) < 1e-3


def test_model_logits_are_cosine_similarities_over_the_temperature() -> None:
    cfg = AVHubertConfig(label_rate=25, encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                         encoder_attention_heads=4, final_dim=8, audio_feat_dim=104, conv_pos=16,
                         conv_pos_groups=4, untie_final_proj=True)
    model = AVHubertModel.build_random(cfg, num_classes=[6, 11])
    x = torch.randn(2, 5, 32)
    logits = model.compute_all_logits(x)
    proj = model.final_proj(x)
    for i, (emb, lo, hi) in enumerate([(model.label_embs_concat[:6], 0, 8), (model.label_embs_concat[6:], 8, 16)]):
        p = proj[..., lo:hi]
        cosine = torch.nn.functional.cosine_similarity(p[:, :, None, :], emb[None, None], dim=-1)
        torch.testing.assert_close(logits[i], cosine / 0.1, rtol=1e-5, atol=1e-5)
