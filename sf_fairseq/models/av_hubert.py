"""AV-HuBERT: audio-visual HuBERT with a ResNet lip front end and a linear audio front end.

Registered in fairseq as ``av_hubert``. Architecture, parameter names and public methods follow the
reference model so published checkpoints (``base_lrs3_iter5.pt``, ``large_vox_iter5.pt``, ...) load
with a strict state dict and user code calling ``extract_finetune`` keeps working.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model
from fairseq.modules import GradMultiply
from omegaconf import II
from torch import nn

from ..checkpoint import register_config_upgrade
from .masking import compute_mask_indices, substitute_other_sequence, substitute_same_sequence
from .resnet import ResEncoder
from .transformer import TransformerEncoder

logger = logging.getLogger(__name__)

MASKING_TYPE_CHOICES = ChoiceEnum(["input", "feature"])
SELECTION_TYPE_CHOICES = ChoiceEnum(["same_other_seq", "same_seq"])
MODALITY_FUSE_CHOICES = ChoiceEnum(["concat", "add"])
SIM_TYPE_CHOICES = ChoiceEnum(["cosine", "dot"])
RELU_TYPE_CHOICES = ChoiceEnum(["prelu", "relu"])
MASK_SELECTION_CHOICES = ChoiceEnum(["static", "uniform", "normal", "poisson"])


@dataclass
class AVHubertConfig(FairseqDataclass):
    """Every field of the reference ``AVHubertConfig`` with the same name and default."""

    label_rate: float = field(default=II("task.label_rate"), metadata={"help": "label frame rate (Hz)"})
    extractor_mode: str = field(default="default", metadata={"help": "unused; kept for checkpoint compatibility"})
    encoder_layers: int = field(default=12, metadata={"help": "number of transformer blocks"})
    encoder_embed_dim: int = field(default=768, metadata={"help": "transformer width D"})
    encoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "feed-forward width"})
    encoder_attention_heads: int = field(default=12, metadata={"help": "attention heads"})
    activation_fn: ChoiceEnum(["gelu"]) = field(default="gelu", metadata={"help": "feed-forward activation"})
    dropout: float = field(default=0.1, metadata={"help": "dropout in the transformer"})
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the FFN activation"})
    encoder_layerdrop: float = field(default=0.0, metadata={"help": "probability of skipping a block in training"})
    dropout_input: float = field(default=0.0, metadata={"help": "dropout on the fused, projected features"})
    dropout_features: float = field(
        default=0.0,
        metadata={"help": "unused by the forward pass; kept for compatibility"},
    )
    final_dim: int = field(
        default=0,
        metadata={"help": "projection size for the cosine logits (0 = encoder_embed_dim)"},
    )
    untie_final_proj: bool = field(default=False, metadata={"help": "one projection slice per label set"})
    layer_norm_first: bool = field(default=False, metadata={"help": "pre-LN transformer blocks"})
    conv_feature_layers: str = field(
        default="[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
        metadata={"help": "unused (wav2vec waveform extractor); kept for checkpoint compatibility"},
    )
    conv_bias: bool = field(default=False, metadata={"help": "unused; kept for compatibility"})
    logit_temp: float = field(default=0.1, metadata={"help": "temperature dividing the cosine logits"})
    target_glu: bool = field(default=False, metadata={"help": "GLU on targets (unsupported, must stay false)"})
    feature_grad_mult: float = field(
        default=1.0,
        metadata={"help": "scale of the gradient into the front ends (0 = frozen)"},
    )
    mask_length_audio: int = field(default=10, metadata={"help": "audio mask span length"})
    mask_prob_audio: float = field(default=0.65, metadata={"help": "audio mask probability"})
    mask_length_image: int = field(default=10, metadata={"help": "video mask span length"})
    mask_prob_image: float = field(default=0.65, metadata={"help": "video mask probability"})
    mask_selection: MASK_SELECTION_CHOICES = field(
        default="static",
        metadata={"help": "span lengths (only static is used)"},
    )
    mask_other: float = field(default=0, metadata={"help": "secondary mask-length parameter (non-static selections)"})
    no_mask_overlap: bool = field(default=False, metadata={"help": "unsupported, must stay false"})
    mask_min_space: int = field(default=1, metadata={"help": "min space between spans when no_mask_overlap"})
    mask_channel_length: int = field(default=10, metadata={"help": "channel mask span length (feature masking)"})
    mask_channel_prob: float = field(default=0.0, metadata={"help": "channel mask probability (feature masking)"})
    mask_channel_selection: MASK_SELECTION_CHOICES = field(default="static", metadata={"help": "channel span lengths"})
    mask_channel_other: float = field(default=0, metadata={"help": "secondary channel-mask parameter"})
    no_mask_channel_overlap: bool = field(default=False, metadata={"help": "unsupported, must stay false"})
    mask_channel_min_space: int = field(default=1, metadata={"help": "min space between channel spans"})
    conv_pos: int = field(default=128, metadata={"help": "kernel of the convolutional positional embedding"})
    conv_pos_groups: int = field(default=16, metadata={"help": "groups of the convolutional positional embedding"})
    latent_temp: tuple[float, float, float] = field(default=(2, 0.5, 0.999995), metadata={"help": "legacy; unused"})
    skip_masked: bool = field(default=False, metadata={"help": "unused by the forward pass"})
    skip_nomask: bool = field(default=False, metadata={"help": "unused by the forward pass"})
    resnet_relu_type: RELU_TYPE_CHOICES = field(default="prelu", metadata={"help": "activation in the ResNet"})
    resnet_weights: str | None = field(
        default=None,
        metadata={"help": "unsupported in the reference (broken); must be null"},
    )
    resnet_width: int = field(
        default=64,
        metadata={"help": "channels of the lip ResNet-18's first stage (64..512 as published); smaller "
                  "front ends train several times faster on CPU (not in the reference: checkpoints "
                  "without it load with 64)"},
    )
    sim_type: SIM_TYPE_CHOICES = field(default="cosine", metadata={"help": "logit similarity"})
    sub_encoder_layers: int = field(default=0, metadata={"help": "transformer blocks inside each front end"})
    audio_feat_dim: int = field(default=-1, metadata={"help": "audio input size (26 filterbanks x stack order)"})
    modality_dropout: float = field(default=0, metadata={"help": "probability of dropping one stream in training"})
    audio_dropout: float = field(default=0, metadata={"help": "given a drop, probability it is the audio"})
    modality_fuse: MODALITY_FUSE_CHOICES = field(default="concat", metadata={"help": "how streams are fused"})
    selection_type: SELECTION_TYPE_CHOICES = field(
        default="same_other_seq",
        metadata={"help": "source of substituted video spans (input masking): another clip or the same clip"},
    )
    masking_type: MASKING_TYPE_CHOICES = field(
        default="input",
        metadata={"help": "mask inputs per modality or fused features"},
    )
    substitute_video_features: bool = field(
        default=False,
        metadata={"help": "input masking: substitute masked video spans in the lip front end's per-frame "
                  "output instead of in its input frames, so the front end runs on the unmasked clip "
                  "and a criterion can reuse that pass (av_hubert_alignment does: one lip ResNet pass "
                  "an update instead of two). Not in the reference, which substitutes input frames; "
                  "the 3D stem then sees the clip's own neighbours at span edges"},
    )
    decoder_embed_dim: int = field(default=768, metadata={"help": "unused by this model (seq2seq decoder)"})
    decoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "unused by this model"})
    decoder_layers: int = field(default=6, metadata={"help": "unused by this model"})
    decoder_layerdrop: float = field(default=0.0, metadata={"help": "unused by this model"})
    decoder_attention_heads: int = field(default=4, metadata={"help": "unused by this model"})
    decoder_learned_pos: bool = field(default=False, metadata={"help": "unused by this model"})
    decoder_normalize_before: bool = field(default=False, metadata={"help": "unused by this model"})
    no_token_positional_embeddings: bool = field(default=False, metadata={"help": "unused by this model"})
    decoder_dropout: float = field(default=0.1, metadata={"help": "unused by this model"})
    decoder_attention_dropout: float = field(default=0.1, metadata={"help": "unused by this model"})
    decoder_activation_dropout: float = field(default=0.0, metadata={"help": "unused by this model"})
    max_target_positions: int = field(default=2048, metadata={"help": "unused by this model"})
    share_decoder_input_output_embed: bool = field(default=False, metadata={"help": "unused by this model"})
    no_scale_embedding: bool = field(default=True, metadata={"help": "unused by this model"})


class FrontEnd(nn.Module):
    """One modality to [B, D, T]: optional ResNet, a per-frame linear projection, optional
    transformer (``sub_encoder_layers``). Named ``SubModel`` in the reference."""

    def __init__(self, cfg: AVHubertConfig, input_dim: int, resnet: ResEncoder | None = None) -> None:
        super().__init__()
        self.resnet = resnet
        self.proj = nn.Linear(input_dim, cfg.encoder_embed_dim)
        self.encoder = None
        if cfg.sub_encoder_layers > 0:
            self.encoder = _build_encoder(cfg, cfg.sub_encoder_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, T] (audio) or [B, 1, T, H, W] (video) -> [B, D, T]."""
        if self.resnet is not None:
            x = self.resnet(x)
        x = self.proj(x.transpose(1, 2))
        if self.encoder is not None:
            x = self.encoder(x)
        return x.transpose(1, 2)


def _build_encoder(cfg: AVHubertConfig, num_layers: int) -> TransformerEncoder:
    return TransformerEncoder(
        embed_dim=cfg.encoder_embed_dim,
        ffn_dim=cfg.encoder_ffn_embed_dim,
        num_layers=num_layers,
        num_heads=cfg.encoder_attention_heads,
        dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout,
        layer_norm_first=cfg.layer_norm_first,
        layerdrop=cfg.encoder_layerdrop,
        conv_pos=cfg.conv_pos,
        conv_pos_groups=cfg.conv_pos_groups,
    )


def _check_supported(cfg: AVHubertConfig) -> None:
    unsupported = {
        "target_glu": cfg.target_glu,
        "no_mask_overlap": cfg.no_mask_overlap,
        "no_mask_channel_overlap": cfg.no_mask_channel_overlap,
        "resnet_weights": cfg.resnet_weights is not None,
    }
    for name, enabled in unsupported.items():
        if enabled:
            raise ValueError(f"av_hubert: {name} is not supported (no published configuration uses it)")
    if cfg.mask_selection != "static" or cfg.mask_channel_selection != "static":
        raise ValueError("av_hubert: only static mask span lengths are supported")
    if cfg.audio_feat_dim <= 0:
        raise ValueError("av_hubert: audio_feat_dim must be set (104 = 26 filterbanks x 4 frames)")
    if cfg.substitute_video_features and (cfg.masking_type != "input" or cfg.sub_encoder_layers > 0):
        raise ValueError("av_hubert: substitute_video_features needs masking_type=input and a per-frame "
                         "front end (sub_encoder_layers=0)")


# Saved configs of this name are upgraded to the dataclass on load (dropped keys are logged).
register_config_upgrade("model", "av_hubert", AVHubertConfig)


@register_model("av_hubert", dataclass=AVHubertConfig)
class AVHubertModel(BaseFairseqModel):
    """Audio-visual masked prediction model.

    Args:
        cfg: model configuration.
        num_classes: dictionary size (with fairseq's 4 special symbols) of each label set.
        feat2tar_ratio: label rate / feature rate (4 for 100 Hz MFCC labels on 25 Hz features).
    """

    def __init__(self, cfg: AVHubertConfig, num_classes: Sequence[int], feat2tar_ratio: float = 1.0) -> None:
        super().__init__()
        _check_supported(cfg)
        self.cfg = cfg
        dim = cfg.encoder_embed_dim
        self.encoder_embed_dim = dim
        self.feat2tar_ratio = feat2tar_ratio
        self.num_classes = list(num_classes)

        self.feature_extractor_audio = FrontEnd(cfg, cfg.audio_feat_dim)
        lip_resnet = ResEncoder(cfg.resnet_relu_type, cfg.resnet_width)
        self.feature_extractor_video = FrontEnd(cfg, lip_resnet.output_dim, lip_resnet)
        fused_dim = 2 * dim if cfg.modality_fuse == "concat" else dim
        self.layer_norm = nn.LayerNorm(fused_dim)
        self.post_extract_proj = nn.Linear(fused_dim, dim) if fused_dim != dim else None
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.dropout_features = nn.Dropout(cfg.dropout_features)

        mask_dim = cfg.audio_feat_dim if cfg.masking_type == "input" else dim
        self.mask_emb = nn.Parameter(torch.empty(mask_dim).uniform_())
        self.encoder = _build_encoder(cfg, cfg.encoder_layers)

        final_dim = cfg.final_dim if cfg.final_dim > 0 else dim
        self.final_dim = final_dim
        n_sets = len(self.num_classes)
        self.final_proj: nn.Linear | None = nn.Linear(
            dim, final_dim * n_sets if cfg.untie_final_proj else final_dim
        )
        self.label_embs_concat = nn.Parameter(torch.empty(sum(self.num_classes), final_dim).uniform_())

    @classmethod
    def build_model(cls, cfg: AVHubertConfig, task: Any) -> "AVHubertModel":
        num_classes = [len(d) for d in task.dictionaries]
        return cls(cfg, num_classes, feat2tar_ratio=cfg.label_rate / task.cfg.sample_rate)

    @classmethod
    def build_random(
        cls, cfg: AVHubertConfig, num_classes: Sequence[int] = (104,), feat2tar_ratio: float = 1.0
    ) -> "AVHubertModel":
        """A randomly initialised model, without a task (tests, benchmarks)."""
        return cls(cfg, num_classes, feat2tar_ratio)

    def upgrade_state_dict_named(self, state_dict: dict[str, torch.Tensor], name: str) -> None:
        """Continuing from a checkpoint trained on other targets (``checkpoint.finetune_from_model``
        with the next iteration's labels): label embeddings, a projection sized by the number of
        label sets and a mask vector of the other masking type cannot carry over when their shapes
        differ, so they keep this model's fresh initialisation, with a warning."""
        super().upgrade_state_dict_named(state_dict, name)
        prefix = f"{name}." if name else ""
        own = self.state_dict()
        for key in ("label_embs_concat", "final_proj.weight", "final_proj.bias", "mask_emb"):
            saved = state_dict.get(prefix + key)
            if saved is not None and key in own and saved.shape != own[key].shape:
                logger.warning(
                    "re-initialising %s: shape %s in the checkpoint, %s for the current labels and config",
                    key, tuple(saved.shape), tuple(own[key].shape),
                )
                state_dict[prefix + key] = own[key].detach().clone()

    @property
    def substitutes_video_features(self) -> bool:
        """Whether masking substitutes the lip front end's output (callers may then pass
        ``video_features`` to :meth:`forward` and :meth:`extract_finetune`)."""
        return self.cfg.substitute_video_features

    # ---- front ends and fusion -------------------------------------------------------------

    def forward_features(self, source: torch.Tensor, modality: str) -> torch.Tensor:
        """One stream through its front end: [B, D, T]."""
        extractor = self.feature_extractor_audio if modality == "audio" else self.feature_extractor_video
        mult = self.cfg.feature_grad_mult
        if mult > 0:
            features = extractor(source)
            if mult != 1.0 and self.training:
                features = GradMultiply.apply(features, mult)
            return features
        with torch.no_grad():
            return extractor(source)

    def forward_targets(
        self, features: torch.Tensor, target_list: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Trim features to the labels and pick the label of each feature frame (subsampling)."""
        feat_frames = features.size(2)
        target_frames = min(t.size(1) for t in target_list)
        if self.feat2tar_ratio * feat_frames > target_frames:
            feat_frames = int(target_frames / self.feat2tar_ratio)
            features = features[..., :feat_frames]
        target_index = (torch.arange(feat_frames, device=features.device).float() * self.feat2tar_ratio).long()
        return features, [t[:, target_index] for t in target_list]

    @staticmethod
    def forward_padding_mask(features: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Reduce a [B, T_in] padding mask to the feature rate of ``features`` [B, T, C]."""
        extra = padding_mask.size(1) % features.size(1)
        if extra > 0:
            padding_mask = padding_mask[:, :-extra]
        return padding_mask.view(padding_mask.size(0), features.size(1), -1).all(-1)

    def _fuse(self, features_audio: torch.Tensor, features_video: torch.Tensor) -> torch.Tensor:
        if self.cfg.modality_fuse == "concat":
            return torch.cat([features_audio, features_video], dim=1)
        return features_audio + features_video

    def _project(
        self, features: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fused [B, C, T] -> LayerNorm -> projection -> dropout: [B, T, D]."""
        features = self.layer_norm(features.transpose(1, 2))
        if padding_mask is not None:
            padding_mask = self.forward_padding_mask(features, padding_mask)
        if self.post_extract_proj is not None:
            features = self.post_extract_proj(features)
        return self.dropout_input(features), padding_mask

    # ---- masking -------------------------------------------------------------------------

    def apply_input_mask(
        self, source: torch.Tensor, padding_mask: torch.Tensor | None, modality: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask raw inputs: audio frames -> ``mask_emb``; video spans -> frames from elsewhere.
        source: [B, C, T] (audio), [B, 1, T, H, W] (video frames) or [B, D, T] (the lip front
        end's per-frame output, with ``substitute_video_features``). Returns (source, mask [B, T])."""
        if modality == "video" and source.dim() == 3:
            # Each frame's feature vector moves as a 1x1 "image" of D channels would.
            features, mask = self.apply_input_mask(source[..., None, None], padding_mask, modality)
            return features[..., 0, 0], mask
        batch, frames = source.size(0), source.size(2)
        if modality == "audio":
            prob, length = self.cfg.mask_prob_audio, self.cfg.mask_length_audio
        else:
            prob, length = self.cfg.mask_prob_image, self.cfg.mask_length_image
        if prob <= 0:
            return source, torch.zeros(batch, frames, dtype=torch.bool, device=source.device)
        mask = compute_mask_indices((batch, frames), padding_mask, prob, length, device=source.device)
        if modality == "audio":
            source = torch.where(mask[:, None, :], self.mask_emb[None, :, None].to(source.dtype), source)
        elif self.cfg.selection_type == "same_seq":
            lengths = (torch.full((batch,), frames, device=source.device) if padding_mask is None
                       else (~padding_mask).sum(1))
            source = substitute_same_sequence(source, mask, lengths)
        else:
            source = substitute_other_sequence(source, mask)
        return source, mask

    def apply_feature_mask(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask fused features [B, T, D] with ``mask_emb`` (time) and zeros (channels)."""
        batch, frames, dim = x.shape
        if (self.cfg.mask_prob_audio != self.cfg.mask_prob_image
                or self.cfg.mask_length_audio != self.cfg.mask_length_image):
            raise ValueError("feature masking needs equal audio and image mask probabilities and lengths")
        mask = torch.zeros(batch, frames, dtype=torch.bool, device=x.device)
        if self.cfg.mask_prob_image > 0:
            mask = compute_mask_indices(
                (batch, frames), padding_mask, self.cfg.mask_prob_image, self.cfg.mask_length_image, device=x.device
            )
            x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        if self.cfg.mask_channel_prob > 0:
            channel_mask = compute_mask_indices(
                (batch, dim), None, self.cfg.mask_channel_prob, self.cfg.mask_channel_length,
                min_masks=0, device=x.device,
            )
            x = x.masked_fill(channel_mask[:, None, :], 0.0)
        return x, mask

    # ---- forward passes ------------------------------------------------------------------

    def forward(
        self,
        source: dict[str, torch.Tensor],
        target_list: list[torch.Tensor] | None = None,
        padding_mask: torch.Tensor | None = None,
        mask: bool = True,
        features_only: bool = False,
        output_layer: int | None = None,
        video_features: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Masked prediction.

        Args:
            source: ``{"audio": [B, F, T], "video": [B, 1, T, H, W]}``.
            target_list: per label set [B, T_label] dictionary indices.
            padding_mask: [B, T], True at padded frames.
            mask: apply masking (training).
            features_only: return encoder output only.
            output_layer: 1-based block whose raw output to return (None = final LayerNorm output).
            video_features: [B, D, T] ``forward_features(source["video"], "video")`` computed by the
                caller, used instead of running the lip front end again (only with
                ``substitute_video_features``, which masks these features rather than the frames).
        """
        src_audio, src_video = source["audio"], source["video"]
        if video_features is not None and not self.cfg.substitute_video_features:
            raise ValueError("video_features (the unmasked clip's lip front-end output) can stand in for "
                             "the video only with substitute_video_features")
        if self.cfg.substitute_video_features and video_features is None:
            video_features = self.forward_features(src_video, "video")
        mask_indices = None
        if mask and self.cfg.masking_type == "input":
            # The video mask is drawn before the audio one, as in the reference.
            if video_features is not None:
                video_features, mask_video = self.apply_input_mask(video_features, padding_mask, "video")
            else:
                src_video, mask_video = self.apply_input_mask(src_video, padding_mask, "video")
            src_audio, mask_audio = self.apply_input_mask(src_audio, padding_mask, "audio")
            mask_indices = mask_audio | mask_video

        features_audio = self.forward_features(src_audio, "audio")
        features_video = self.forward_features(src_video, "video") if video_features is None else video_features
        if self.training and self.cfg.modality_dropout > 0:
            drop_modality, drop_audio = torch.rand(2).tolist()
            if drop_modality < self.cfg.modality_dropout:
                if drop_audio < self.cfg.audio_dropout:
                    features_audio = 0 * features_audio
                else:
                    features_video = 0 * features_video
        features = self._fuse(features_audio, features_video)  # [B, C, T]
        if target_list is not None:
            features, target_list = self.forward_targets(features, target_list)
            if mask_indices is not None:
                mask_indices = mask_indices[:, : features.size(2)]
        features_pen = features.float().pow(2).mean()
        features, padding_mask = self._project(features, padding_mask)

        if mask and self.cfg.masking_type == "feature":
            x, mask_indices = self.apply_feature_mask(features, padding_mask)
        else:
            x = features
        x = self.encoder(x, padding_mask=padding_mask, layer=output_layer)
        if features_only:
            return {"x": x, "padding_mask": padding_mask, "features": features}
        if target_list is None:
            raise ValueError("target_list is required unless features_only=True")

        if padding_mask is None:
            padding_mask = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        if mask_indices is None:
            mask_indices = torch.zeros_like(padding_mask)
        logit_list = self.compute_all_logits(x)  # per label set [B, T, V]
        masked = (mask_indices & ~padding_mask).view(-1)
        unmasked = (~mask_indices & ~padding_mask).view(-1)
        flat_logits = [logits.reshape(-1, logits.size(-1)) for logits in logit_list]
        flat_targets = [target.reshape(-1).long() for target in target_list]
        return {
            "logit_m_list": [logits[masked] for logits in flat_logits],
            "logit_u_list": [logits[unmasked] for logits in flat_logits],
            "target_m_list": [target[masked] for target in flat_targets],
            "target_u_list": [target[unmasked] for target in flat_targets],
            "padding_mask": padding_mask,
            "features_pen": features_pen,
        }

    def compute_all_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every frame against every label embedding: per label set [B, T, V]."""
        if self.final_proj is None:
            raise RuntimeError("pretraining modules were removed; logits are unavailable")
        proj = self.final_proj(x)
        n_sets = len(self.num_classes)
        projections = proj.chunk(n_sets, dim=-1) if self.cfg.untie_final_proj else [proj] * n_sets
        embeddings = self.label_embs_concat.split(self.num_classes, 0)
        return [self.compute_logits(p, e) for p, e in zip(projections, embeddings)]

    def compute_logits(self, feats: torch.Tensor, emb_mat: torch.Tensor) -> torch.Tensor:
        """feats [B, T, F], emb_mat [V, F] -> [B, T, V] similarities / ``logit_temp``."""
        logits = feats @ emb_mat.t()
        if self.cfg.sim_type == "cosine":
            norms = feats.norm(dim=-1, keepdim=True) * emb_mat.norm(dim=-1)
            logits = logits / norms.clamp(min=1e-6)
        return logits / self.cfg.logit_temp

    def extract_features(
        self,
        source: dict[str, torch.Tensor],
        padding_mask: torch.Tensor | None = None,
        mask: bool = False,
        ret_conv: bool = False,
        output_layer: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both streams through the model: encoder output [B, T, D] (or, with ``ret_conv``, the
        fused projected features) and the padding mask."""
        res = self.forward(source, padding_mask=padding_mask, mask=mask, features_only=True, output_layer=output_layer)
        return (res["features"] if ret_conv else res["x"]), res["padding_mask"]

    def extract_finetune(
        self,
        source: dict[str, torch.Tensor | None],
        padding_mask: torch.Tensor | None = None,
        mask: bool = False,
        ret_conv: bool = False,
        output_layer: int | None = None,
        video_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode with either stream missing (``None``): the missing stream is zeros [B, D, T]
        after its front end, as modality dropout does in training. No masking.

        ``video_features`` [B, D, T], the lip front end's output computed by the caller, stands in
        for ``source["video"]`` (which must then be ``None``).

        Returns: encoder output [B, T, D] and the padding mask [B, T] (or None).
        """
        src_audio, src_video = source.get("audio"), source.get("video")
        if src_video is not None and video_features is not None:
            raise ValueError("extract_finetune takes the video or its front-end features, not both")
        if src_audio is None and src_video is None and video_features is None:
            raise ValueError("extract_finetune needs at least one of source['audio'], source['video']")
        features_audio = None if src_audio is None else self.forward_features(src_audio, "audio")
        features_video = video_features
        if src_video is not None:
            features_video = self.forward_features(src_video, "video")
        if features_audio is None:
            features_audio = features_video.new_zeros(features_video.shape)
        if features_video is None:
            features_video = features_audio.new_zeros(features_audio.shape)
        features, padding_mask = self._project(self._fuse(features_audio, features_video), padding_mask)
        x = self.encoder(features, padding_mask=padding_mask, layer=output_layer)
        return (features if ret_conv else x), padding_mask

    def extract_finetune_streams(
        self,
        video: torch.Tensor,
        video_padding_mask: torch.Tensor,
        audio: torch.Tensor,
        audio_padding_mask: torch.Tensor,
        output_layer: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Video-only and audio-only :meth:`extract_finetune` of the same clips, with one pass
        through the transformer for both.

        The two encodings are stacked as one batch of Bv + Ba rows, padded to the longer stream:
        each weight matrix is read once for both (on CPU a LARGE transformer's matrix products
        are then ~10% faster). Both front ends work frame by frame (the stem's 5-frame window
        sees zeros past the end either way) and padded frames are masked in the transformer, so
        the valid frames get the same features as from two ``extract_finetune`` calls.

        Args:
            video: [Bv, 1, Tv, H, W]; video_padding_mask: [Bv, Tv] (True = padding).
            audio: [Ba, F, Ta]; audio_padding_mask: [Ba, Ta] (usually Ba = Bv, the same clips;
                a caller that skips streams it has encoded before may pass fewer of one).
            output_layer: 1-based block whose raw output to return (None = final output).

        Returns: lip features [Bv, Tv, D] and speech features [Ba, Ta, D].
        """
        video_batch, video_frames, audio_frames = video.size(0), video.size(2), audio.size(2)
        frames = max(video_frames, audio_frames)

        def padded(features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            extra = frames - features.size(2)
            return F.pad(features, (0, extra)), F.pad(mask, (0, extra), value=True)

        features_video, mask_video = padded(self.forward_features(video, "video"), video_padding_mask)
        features_audio, mask_audio = padded(self.forward_features(audio, "audio"), audio_padding_mask)
        features = torch.cat([self._fuse(torch.zeros_like(features_video), features_video),
                              self._fuse(features_audio, torch.zeros_like(features_audio))])
        features, padding_mask = self._project(features, torch.cat([mask_video, mask_audio]))
        x = self.encoder(features, padding_mask=padding_mask, layer=output_layer)
        return x[:video_batch, :video_frames], x[video_batch:, :audio_frames]

    def get_extra_losses(self, net_output: dict[str, Any]) -> tuple[list[torch.Tensor], list[str]]:
        if "features_pen" in net_output:
            return [net_output["features_pen"]], ["features_pen"]
        return [], []

    def remove_pretraining_modules(self) -> None:
        """Drop what only masked prediction needs (fine-tuning keeps the encoder)."""
        self.final_proj = None
