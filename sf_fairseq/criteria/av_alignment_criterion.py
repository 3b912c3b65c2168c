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

``alignment_clip_weight > 0`` adds a clip-level term on what the scorer measures: with
C_bc = mean over the instants t both clips hold of <v_b(t), a_c(t)> (clip b's lips against clip
c's audio at the same instants, which is what dubbing looks like),

    L_clip = 1/(2B) * sum_b [ CE(C_b: / tau, b) + CE(C_:b / tau, b) ]

added as ``alignment_clip_weight * L_clip * n``. The frame term within clips is blind to a
component every frame of a clip shares (it shifts a row of logits by a constant); this term is
not, so it keeps other speech from scoring as high as the clip's own.

With ``alignment_max_shift=S > 0`` each update draws a shift d in [-S, S] frames and encodes the
video frames [max(d, 0), T - max(-d, 0)) and the audio frames [max(-d, 0), T - max(d, 0)): the two
encodings see the same instant at positions d frames apart, and the term is taken over the
instants both hold. Without it, a frame's position in the clip (which both encoders can read
from the edges of the clip) identifies its partner among the clip's frames, a shortcut that
says nothing about lips and sound and pulls the scorer's offset search towards zero.

With a model built with ``substitute_video_features`` (masked video spans substituted in the
lip front end's output rather than in its input frames), the front end runs once an update, on
the clean clips: the masked-prediction pass masks that output, and the alignment term's lip-only
pass takes its shifted excerpt of it. Otherwise the front end runs on the masked frames and again
on the clean excerpt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum

from ..checkpoint import register_config_upgrade
from .av_hubert_criterion import AVHubertCriterion, AVHubertCriterionConfig


@dataclass
class AVAlignmentCriterionConfig(AVHubertCriterionConfig):
    alignment_weight: float = field(default=1.0, metadata={"help": "weight of the frame-wise alignment term (0 = off)"})
    alignment_temperature: float = field(default=0.1, metadata={"help": "temperature tau of the alignment logits"})
    alignment_layer: int | None = field(
        default=None, metadata={"help": "encoder block whose output is aligned (None = final output)"}
    )
    alignment_negatives: ChoiceEnum(["batch", "clip"]) = field(  # type: ignore[valid-type]
        default="batch", metadata={"help": "negatives of a frame: every other frame of the batch, or "
                                           "only the other frames of the same clip"}
    )
    alignment_clip_weight: float = field(
        default=0.0, metadata={"help": "weight of the clip-level term (own audio against the other "
                                       "clips' audio at the same instants; 0 = off)"}
    )
    alignment_max_shift: int = field(
        default=0, metadata={"help": "largest shift (frames) between the video and audio excerpts "
                                     "encoded for the alignment term, drawn per update (0 = none)"}
    )


def shifted_excerpts(
    video: torch.Tensor, audio: torch.Tensor, padding_mask: torch.Tensor | None, shift: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, slice, slice]:
    """Excerpts of one length whose frames are ``shift`` instants apart.

    Args:
        video: [B, 1, T, H, W] frames or [B, D, T] lip front-end features; audio: [B, F, T];
            padding_mask: [B, T] (True = padding).
    Returns: the video excerpt (instants [max(shift, 0), ...)), the audio excerpt (instants
        [max(-shift, 0), ...)), their padding masks, and the rows of each stream's encoding that
        hold the instants both excerpts cover, in the same order.
    """
    frames = audio.size(-1)
    if not 0 <= 2 * abs(shift) < frames:
        raise ValueError(f"shift {shift} leaves no common frames in clips of {frames} frames")
    length, video_start, audio_start = frames - abs(shift), max(shift, 0), max(-shift, 0)
    video = video[:, :, video_start : video_start + length]
    audio = audio[..., audio_start : audio_start + length]
    video_mask = audio_mask = None
    if padding_mask is not None:
        video_mask = padding_mask[:, video_start : video_start + length]
        audio_mask = padding_mask[:, audio_start : audio_start + length]
    common = length - abs(shift)
    # Row r of the video encoding is instant video_start + r, of the audio one audio_start + r.
    return (video, audio, video_mask, audio_mask,
            slice(audio_start, audio_start + common), slice(video_start, video_start + common))


def _normalised(
    video_features: torch.Tensor, audio_features: torch.Tensor, padding_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L2-normalised float32 encodings [B, T, D] and the mask of non-padded frames [B, T]."""
    if padding_mask is None:
        valid = torch.ones(video_features.shape[:2], dtype=torch.bool, device=video_features.device)
    else:
        valid = ~padding_mask
    return F.normalize(video_features.float(), dim=-1), F.normalize(audio_features.float(), dim=-1), valid


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
    video, audio, valid = _normalised(video_features, audio_features, padding_mask)
    logits = torch.bmm(video, audio.transpose(1, 2)) / temperature  # [B, T_video, T_audio]
    pair_valid = valid[:, :, None] & valid[:, None, :]
    logits = logits.masked_fill(~pair_valid, float("-inf"))
    positives = torch.diagonal(logits, dim1=1, dim2=2)  # [B, T]
    video_to_audio = torch.logsumexp(logits, dim=2) - positives
    audio_to_video = torch.logsumexp(logits, dim=1) - positives
    n_frames = int(valid.sum())
    loss = 0.5 * (video_to_audio[valid].sum() + audio_to_video[valid].sum()) / max(n_frames, 1)
    return loss, n_frames


def clip_pair_loss(
    video_features: torch.Tensor,
    audio_features: torch.Tensor,
    padding_mask: torch.Tensor | None,
    temperature: float,
) -> tuple[torch.Tensor, int]:
    """Symmetric InfoNCE over the batch's clips on C_bc, the mean over common non-padded instants
    of the cosine between clip b's video and clip c's audio encodings.

    Args: as :func:`clip_alignment_loss`. Returns: (mean loss over the B clips, B); a batch of
    one clip has no negatives and gives zero.
    """
    batch = video_features.size(0)
    if batch < 2:
        return video_features.new_zeros(()), batch
    video, audio, valid = _normalised(video_features, audio_features, padding_mask)
    cosines = torch.einsum("btd,ctd->bct", video, audio)  # [B_video, B_audio, T]
    common = (valid[:, None, :] & valid[None, :, :]).float()
    means = (cosines * common).sum(-1) / common.sum(-1).clamp(min=1.0)  # [B, B]
    logits = means / temperature
    target = torch.arange(batch, device=logits.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    return loss, batch


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


# Saved configs of this name are upgraded to the dataclass on load (dropped keys are logged).
register_config_upgrade("criterion", "av_hubert_alignment", AVAlignmentCriterionConfig)


@register_criterion("av_hubert_alignment", dataclass=AVAlignmentCriterionConfig)
class AVAlignmentCriterion(AVHubertCriterion):
    def __init__(self, task: Any, pred_masked_weight: float, pred_nomask_weight: float,
                 loss_weights: list[float] | None = None, log_keys: list[str] | None = None,
                 alignment_weight: float = 1.0, alignment_temperature: float = 0.1,
                 alignment_layer: int | None = None, alignment_negatives: str = "batch",
                 alignment_max_shift: int = 0, alignment_clip_weight: float = 0.0) -> None:
        super().__init__(task, pred_masked_weight, pred_nomask_weight, loss_weights, log_keys)
        self.alignment_weight = alignment_weight
        self.alignment_temperature = alignment_temperature
        self.alignment_layer = alignment_layer
        self.alignment_loss = clip_alignment_loss if alignment_negatives == "clip" else frame_alignment_loss
        if alignment_max_shift < 0:
            raise ValueError(f"alignment_max_shift must be >= 0, got {alignment_max_shift}")
        self.alignment_max_shift = alignment_max_shift
        self.alignment_clip_weight = alignment_clip_weight

    def forward(
        self, model: Any, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[torch.Tensor, int, dict[str, Any]]:
        if self.alignment_weight <= 0 and self.alignment_clip_weight <= 0:
            return super().forward(model, sample, reduce)
        net_input = sample["net_input"]
        source, padding_mask = net_input["source"], net_input["padding_mask"]
        # A model that masks the lip front end's output, not its input frames, lets both terms
        # share one front-end pass over the clean clip [B, D, T] (the costliest part of a CPU update).
        clean_video = model.forward_features(source["video"], "video") if model.substitutes_video_features else None
        shared = {} if clean_video is None else {"video_features": clean_video}
        net_output = model(target_list=sample["target_list"], **net_input, **shared)
        loss, sample_size, logging_output = self.loss_of(model, sample, net_output, reduce)
        limit = min(self.alignment_max_shift, (source["audio"].size(-1) - 1) // 2)
        shift = int(torch.randint(-limit, limit + 1, ())) if limit > 0 else 0
        video_in, audio_in, video_mask, audio_mask, video_rows, audio_rows = shifted_excerpts(
            source["video"] if clean_video is None else clean_video, source["audio"], padding_mask, shift)
        if clean_video is None:
            video, video_mask = model.extract_finetune(
                {"video": video_in, "audio": None}, video_mask, output_layer=self.alignment_layer)
        else:
            video, video_mask = model.extract_finetune(
                {"video": None, "audio": None}, video_mask, output_layer=self.alignment_layer, video_features=video_in)
        audio, audio_mask = model.extract_finetune(
            {"video": None, "audio": audio_in}, audio_mask, output_layer=self.alignment_layer)
        frame_mask = None
        if video_mask is not None and audio_mask is not None:
            frame_mask = video_mask[:, video_rows] | audio_mask[:, audio_rows]
        video, audio = video[:, video_rows], audio[:, audio_rows]
        align, n_frames = self.alignment_loss(video, audio, frame_mask, self.alignment_temperature)
        # The two weights are independent: the frame term is logged even when only the clip term trains.
        term = self.alignment_weight * align * max(sample_size, 1) if self.alignment_weight > 0 else align.new_zeros(())
        if self.alignment_clip_weight > 0:
            clip_term, n_clips = clip_pair_loss(video, audio, frame_mask, self.alignment_temperature)
            logging_output["alignment_clips"] = n_clips
            logging_output["alignment_clip_nce"] = clip_term.item() * n_clips
            term = term + self.alignment_clip_weight * clip_term * max(sample_size, 1)
        loss = loss + term
        logging_output["loss"] = loss.item() if reduce else loss
        logging_output["loss_alignment"] = term.item()
        logging_output["alignment_frames"] = n_frames
        logging_output["alignment_nce"] = align.item() * n_frames
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict[str, Any]]) -> None:
        AVHubertCriterion.reduce_metrics(
            [{k: v for k, v in log.items() if not k.startswith("alignment_")} for log in logging_outputs])
        frames = sum(log.get("alignment_frames", 0) for log in logging_outputs)
        if frames:
            nce = sum(log.get("alignment_nce", 0) for log in logging_outputs)
            metrics.log_scalar("alignment_nce", nce / frames, frames, round=3)
        clips = sum(log.get("alignment_clips", 0) for log in logging_outputs)
        if clips:
            clip_nce = sum(log.get("alignment_clip_nce", 0) for log in logging_outputs)
            metrics.log_scalar("alignment_clip_nce", clip_nce / clips, clips, round=3)
