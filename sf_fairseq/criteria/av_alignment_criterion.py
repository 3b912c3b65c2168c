"""Criterion ``av_hubert_alignment``: masked prediction plus a frame-wise audio-visual alignment
term, for continuing pretraining on real videos so lip-only and audio-only encodings of the same
instant agree (the signal SpeechForensics scores).

For a batch, encode the video stream alone (audio zeroed after its front end) and the audio
stream alone, take the encoder output of every non-padded frame, L2-normalise, and stack the
N frames of all clips: ``v_i``, ``a_i`` (i = 1..N). With temperature tau,

    S_ij = <v_i, a_j> / tau
    L_align = 1/(2N) * sum_i [ CE(S_i:, i) + CE(S_:i, i) ]     (symmetric InfoNCE)

so every frame's true partner is the positive and all other frames of the batch (other instants
of the same clip and all frames of other clips) are negatives (``alignment_negatives=batch``).
With ``alignment_negatives=clip`` the softmax runs over the frames of the same clip only
(S restricted to each clip's T_b x T_b block, averaged over all N frames): the term can then
only be lowered by telling instants apart (what lip-sync is), not by recognising which clip,
face or voice a frame comes from. The criterion minimises

    L = L_masked_prediction + loss_weights * features_pen * n + alignment_weight * L_align * n

where n is the masked-prediction sample size (masked target frames), so the alignment weight is
on the same per-frame scale as the other terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum

from .av_hubert_criterion import AVHubertCriterion, AVHubertCriterionConfig


@dataclass
class AVAlignmentCriterionConfig(AVHubertCriterionConfig):
    alignment_weight: float = field(default=1.0, metadata={"help": "weight of the audio-visual alignment term"})
    alignment_temperature: float = field(default=0.1, metadata={"help": "temperature tau of the alignment logits"})
    alignment_layer: int | None = field(
        default=None, metadata={"help": "encoder block whose output is aligned (None = final output)"}
    )
    alignment_negatives: ChoiceEnum(["batch", "clip"]) = field(  # type: ignore[valid-type]
        default="batch", metadata={"help": "negatives of a frame: every other frame of the batch, or "
                                           "only the other frames of the same clip"}
    )


def clip_alignment_loss(
    video_features: torch.Tensor,
    audio_features: torch.Tensor,
    padding_mask: torch.Tensor | None,
    temperature: float,
) -> tuple[torch.Tensor, int]:
    """Symmetric InfoNCE with each clip's own frames as the only negatives.

    Args:
        video_features, audio_features: [B, T, D] encodings of the same clips.
        padding_mask: [B, T], True at padded frames.
    Returns: (mean loss over the N non-padded frames, N).
    """
    if padding_mask is None:
        valid = torch.ones(video_features.shape[:2], dtype=torch.bool, device=video_features.device)
    else:
        valid = ~padding_mask
    video = F.normalize(video_features.float(), dim=-1)
    audio = F.normalize(audio_features.float(), dim=-1)
    logits = torch.bmm(video, audio.transpose(1, 2)) / temperature  # [B, T_video, T_audio]
    pair_valid = valid[:, :, None] & valid[:, None, :]
    logits = logits.masked_fill(~pair_valid, float("-inf"))
    positives = torch.diagonal(logits, dim1=1, dim2=2)  # [B, T]
    video_to_audio = torch.logsumexp(logits, dim=2) - positives
    audio_to_video = torch.logsumexp(logits, dim=1) - positives
    n_frames = int(valid.sum())
    loss = 0.5 * (video_to_audio[valid].sum() + audio_to_video[valid].sum()) / max(n_frames, 1)
    return loss, n_frames


def frame_alignment_loss(
    video_features: torch.Tensor,
    audio_features: torch.Tensor,
    padding_mask: torch.Tensor | None,
    temperature: float,
) -> tuple[torch.Tensor, int]:
    """Symmetric InfoNCE over the batch's frames: :func:`clip_alignment_loss` with the
    non-padded frames of all clips taken as one clip (same arguments and returns)."""
    if padding_mask is None:
        video, audio = video_features.flatten(0, 1), audio_features.flatten(0, 1)
    else:
        video, audio = video_features[~padding_mask], audio_features[~padding_mask]
    return clip_alignment_loss(video[None], audio[None], None, temperature)


@register_criterion("av_hubert_alignment", dataclass=AVAlignmentCriterionConfig)
class AVAlignmentCriterion(AVHubertCriterion):
    def __init__(self, task: Any, pred_masked_weight: float, pred_nomask_weight: float,
                 loss_weights: list[float] | None = None, log_keys: list[str] | None = None,
                 alignment_weight: float = 1.0, alignment_temperature: float = 0.1,
                 alignment_layer: int | None = None, alignment_negatives: str = "batch") -> None:
        super().__init__(task, pred_masked_weight, pred_nomask_weight, loss_weights, log_keys)
        self.alignment_weight = alignment_weight
        self.alignment_temperature = alignment_temperature
        self.alignment_layer = alignment_layer
        self.alignment_loss = clip_alignment_loss if alignment_negatives == "clip" else frame_alignment_loss

    def forward(self, model: Any, sample: dict[str, Any], reduce: bool = True) -> tuple[torch.Tensor, int, dict[str, Any]]:
        loss, sample_size, logging_output = super().forward(model, sample, reduce)
        if self.alignment_weight <= 0:
            return loss, sample_size, logging_output
        net_input = sample["net_input"]
        source, padding_mask = net_input["source"], net_input["padding_mask"]
        video, _ = model.extract_finetune({"video": source["video"], "audio": None}, padding_mask, output_layer=self.alignment_layer)
        audio, frame_mask = model.extract_finetune({"video": None, "audio": source["audio"]}, padding_mask, output_layer=self.alignment_layer)
        align, n_frames = self.alignment_loss(video, audio, frame_mask, self.alignment_temperature)
        term = self.alignment_weight * align * max(sample_size, 1)
        loss = loss + term
        logging_output["loss"] = loss.item() if reduce else loss
        logging_output["loss_alignment"] = term.item()
        logging_output["alignment_frames"] = n_frames
        logging_output["alignment_nce"] = align.item() * n_frames
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict[str, Any]]) -> None:
        AVHubertCriterion.reduce_metrics([{k: v for k, v in log.items() if not k.startswith("alignment_")} for log in logging_outputs])
        frames = sum(log.get("alignment_frames", 0) for log in logging_outputs)
        if frames:
            metrics.log_scalar("alignment_nce", sum(log.get("alignment_nce", 0) for log in logging_outputs) / frames, frames, round=3)
