"""Criterion ``av_hubert``: cross-entropy of masked (and optionally unmasked) frames' cluster ids,
plus the feature penalty, as AV-HuBERT trains."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..checkpoint import register_config_upgrade


@dataclass
class AVHubertCriterionConfig(FairseqDataclass):
    pred_masked_weight: float = field(default=1.0, metadata={"help": "weight of the loss on masked frames"})
    pred_nomask_weight: float = field(default=0.0, metadata={"help": "weight of the loss on unmasked frames"})
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "weights of the model's extra losses (features_pen); one value applies to all"}
    )
    log_keys: list[str] = field(default_factory=list, metadata={"help": "net_output keys to log"})


def masked_prediction_loss(
    net_output: dict[str, Any], masked_weight: float, unmasked_weight: float, reduce: bool = True
) -> tuple[torch.Tensor, int, dict[str, Any]]:
    """Weighted cross-entropy over masked / unmasked frames of every label set.

    Returns: (summed loss, sample size = number of scored target frames, logging values).
    """
    reduction = "sum" if reduce else "none"
    loss: torch.Tensor | float = 0.0
    sample_size = 0
    logging_output: dict[str, Any] = {}
    for kind, weight in (("m", masked_weight), ("u", unmasked_weight)):
        logits_list, targets_list = net_output[f"logit_{kind}_list"], net_output[f"target_{kind}_list"]
        losses = []
        for i, (logits, targets) in enumerate(zip(logits_list, targets_list)):
            part = F.cross_entropy(logits, targets, reduction=reduction)
            losses.append(part)
            logging_output[f"loss_{kind}_{i}"] = part.detach().item() if reduce else part.detach()
            with torch.no_grad():
                correct = int((logits.argmax(-1) == targets).sum()) if logits.numel() else 0
                logging_output[f"correct_{kind}_{i}"] = correct
                logging_output[f"count_{kind}_{i}"] = int(targets.numel())
        if weight > 0:
            loss = loss + weight * sum(losses)
            sample_size += targets_list[0].numel()
    return loss, sample_size, logging_output


# Saved configs of this name are upgraded to the dataclass on load (dropped keys are logged).
register_config_upgrade("criterion", "av_hubert", AVHubertCriterionConfig)


@register_criterion("av_hubert", dataclass=AVHubertCriterionConfig)
class AVHubertCriterion(FairseqCriterion):
    def __init__(self, task: Any, pred_masked_weight: float, pred_nomask_weight: float,
                 loss_weights: list[float] | None = None, log_keys: list[str] | None = None) -> None:
        super().__init__(task)
        self.pred_masked_weight = pred_masked_weight
        self.pred_nomask_weight = pred_nomask_weight
        self.loss_weights = loss_weights
        self.log_keys = list(log_keys or [])

    def extra_losses(
        self, model: Any, net_output: dict[str, Any], sample_size: int
    ) -> tuple[torch.Tensor | float, dict[str, float]]:
        """``loss_weights[i] * extra_loss_i * sample_size`` for the model's extra losses."""
        if self.loss_weights is None:
            return 0.0, {}
        losses, names = model.get_extra_losses(net_output)
        weights = list(self.loss_weights)
        if len(weights) == 1 and len(losses) != 1:
            weights = weights * len(losses)
        if len(weights) != len(losses):
            raise ValueError(f"{len(weights)} loss_weights for {len(losses)} extra losses {names}")
        total: torch.Tensor | float = 0.0
        logged = {}
        for value, name, weight in zip(losses, names, weights):
            if weight != 0 and value is not None:
                term = weight * value.float() * sample_size
                total = total + term
                logged[f"loss_{name}"] = term.item()
        return total, logged

    def forward(
        self, model: Any, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[torch.Tensor, int, dict[str, Any]]:
        net_output = model(target_list=sample["target_list"], **sample["net_input"])
        return self.loss_of(model, sample, net_output, reduce)

    def loss_of(
        self, model: Any, sample: dict[str, Any], net_output: dict[str, Any], reduce: bool = True
    ) -> tuple[torch.Tensor, int, dict[str, Any]]:
        """The loss, sample size and logging values of the model's masked-prediction output."""
        loss, sample_size, logging_output = masked_prediction_loss(
            net_output, self.pred_masked_weight, self.pred_nomask_weight, reduce
        )
        extra, extra_logged = self.extra_losses(model, net_output, sample_size)
        loss = loss + extra
        logging_output.update(extra_logged)
        for key in self.log_keys:
            if key in net_output:
                logging_output[key] = float(net_output[key])
        logging_output.update(
            loss=loss.item() if reduce else loss,
            ntokens=sample_size,
            nsentences=sample["id"].numel(),
            sample_size=sample_size,
        )
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict[str, Any]]) -> None:
        def total(key: str) -> float:
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size = total("sample_size")
        metrics.log_scalar("loss", total("loss") / max(sample_size, 1) / math.log(2), sample_size, round=3)
        counts = {}
        for key in logging_outputs[0]:
            if key.startswith("count_"):
                counts[key] = total(key)
                metrics.log_scalar(key, counts[key])
        for key in logging_outputs[0]:
            if key.startswith("loss_"):
                metrics.log_scalar(key, total(key) / max(sample_size, 1) / math.log(2), round=3)
            elif key.startswith("correct_"):
                count = counts.get("count_" + key[len("correct_"):], 0)
                metrics.log_scalar(key, total(key) / count if count else 0.0)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        # Summable logs let fairseq all-reduce them without a CUDA buffer (CPU/gloo training).
        return True
