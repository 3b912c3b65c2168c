"""Fine-tuned AV-HuBERT: the pretrained encoder plus a transformer decoder (lip reading / AVSR).

Registered in fairseq as ``av_hubert_seq2seq``, with the reference's config fields and parameter
names (``encoder.w2v_model.*``, ``decoder.*``), so published VSR/AVSR files (``base_vox_433h.pt``,
``large_noise_pt_noise_ft_433h.pt``, ...) load with a strict state dict and user code calling
``models[0].encoder.w2v_model.extract_finetune`` keeps working.

Unlike the reference, a fine-tuned file loads from the file alone: the encoder is built from the
pretraining config saved in ``cfg.model.w2v_args``, the target dictionary and SentencePiece model
come from the task state, and ``w2v_path`` (the pretrained checkpoint) is read only when
fine-tuning starts (``w2v_args`` is None).

Also unlike the reference, which always fine-tunes on the streams the task loads, the model can
drop one stream per training batch (``modality_dropout``, ``audio_dropout``; off by default): a
model fine-tuned on both streams that way also reads the lips alone and the audio alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from fairseq import checkpoint_utils
from fairseq.dataclass import FairseqDataclass
from fairseq.models import FairseqEncoder, FairseqEncoderDecoderModel, register_model
from omegaconf import II, MISSING, OmegaConf, open_dict

from ..checkpoint import register_config_upgrade
from ..data.rates import FPS
from .av_hubert import MASK_SELECTION_CHOICES, AVHubertConfig, AVHubertModel
from .decoder import TransformerDecoder, build_embedding

logger = logging.getLogger(__name__)


@dataclass
class AVHubertSeq2SeqConfig(FairseqDataclass):
    """Every field of the reference ``AVHubertSeq2SeqConfig`` with the same name and default, plus
    the fine-tuning stream dropout (``modality_dropout``, ``audio_dropout``: 0 = the reference)."""

    w2v_path: str = field(default=MISSING, metadata={"help": "pretrained AV-HuBERT checkpoint to fine-tune"})
    no_pretrained_weights: bool = field(
        default=False, metadata={"help": "take only the config from w2v_path (random encoder weights)"}
    )
    dropout_input: float = field(default=0.0, metadata={"help": "encoder: dropout on the fused features"})
    final_dropout: float = field(default=0.0, metadata={"help": "unused by the seq2seq model (CTC head)"})
    dropout: float = field(default=0.0, metadata={"help": "encoder: dropout in the transformer"})
    attention_dropout: float = field(default=0.0, metadata={"help": "encoder: dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "encoder: dropout after the FFN activation"})
    apply_mask: bool = field(default=False, metadata={"help": "mask encoder inputs in training (unsupported)"})
    mask_length: int = field(default=10, metadata={"help": "inert (wav2vec name unknown to AV-HuBERT)"})
    mask_prob: float = field(default=0.5, metadata={"help": "inert (wav2vec name unknown to AV-HuBERT)"})
    mask_selection: MASK_SELECTION_CHOICES = field(default="static", metadata={"help": "inert"})
    mask_other: float = field(default=0, metadata={"help": "inert"})
    no_mask_overlap: bool = field(default=False, metadata={"help": "inert"})
    mask_channel_length: int = field(default=10, metadata={"help": "inert"})
    mask_channel_prob: float = field(default=0.0, metadata={"help": "inert"})
    mask_channel_selection: MASK_SELECTION_CHOICES = field(default="static", metadata={"help": "inert"})
    mask_channel_other: float = field(default=0, metadata={"help": "inert"})
    no_mask_channel_overlap: bool = field(default=False, metadata={"help": "inert"})
    freeze_finetune_updates: int = field(
        default=0, metadata={"help": "train only the decoder for this many updates (encoder under no_grad)"}
    )
    feature_grad_mult: float = field(default=0.0, metadata={"help": "encoder: gradient scale into the front ends"})
    layerdrop: float = field(default=0.0, metadata={"help": "encoder: probability of skipping a block"})
    normalize: bool = field(default=II("task.normalize"), metadata={"help": "must match the pretraining task"})
    data: str = field(default=II("task.data"), metadata={"help": "unused; kept for compatibility"})
    w2v_args: Any = field(
        default=None, metadata={"help": "the pretraining config (filled from w2v_path and saved with the model)"}
    )
    decoder_embed_dim: int = field(default=768, metadata={"help": "decoder width"})
    decoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "decoder feed-forward width"})
    decoder_layers: int = field(default=6, metadata={"help": "decoder blocks"})
    decoder_layerdrop: float = field(default=0.0, metadata={"help": "probability of skipping a decoder block"})
    decoder_attention_heads: int = field(default=4, metadata={"help": "decoder attention heads"})
    decoder_learned_pos: bool = field(default=False, metadata={"help": "learned (else sinusoidal) positions"})
    decoder_normalize_before: bool = field(default=False, metadata={"help": "pre-LN decoder blocks"})
    no_token_positional_embeddings: bool = field(default=False, metadata={"help": "no positional embedding"})
    decoder_dropout: float = field(default=0.0, metadata={"help": "dropout in the decoder"})
    decoder_attention_dropout: float = field(default=0.0, metadata={"help": "dropout on decoder attention weights"})
    decoder_activation_dropout: float = field(
        default=0.0,
        metadata={"help": "dropout after the decoder FFN activation"},
    )
    max_target_positions: int = field(default=2048, metadata={"help": "longest target sequence"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie the output projection to the token embedding"}
    )
    no_scale_embedding: bool = field(default=True, metadata={"help": "no sqrt(dim) scaling of token embeddings"})
    modality_dropout: float = field(
        default=0.0,
        metadata={"help": "probability that a training batch keeps one stream only (not in the reference)"},
    )
    audio_dropout: float = field(
        default=0.0, metadata={"help": "given a stream dropped by modality_dropout, probability it is the audio"}
    )


class AVHubertEncoderWrapper(FairseqEncoder):
    """The AV-HuBERT encoder as a fairseq encoder (attribute ``w2v_model``, as the reference)."""

    def __init__(self, w2v_model: AVHubertModel) -> None:
        super().__init__(None)
        self.w2v_model = w2v_model

    def forward(
        self, source: dict[str, torch.Tensor | None], padding_mask: torch.Tensor | None = None, **unused: Any
    ) -> dict[str, torch.Tensor | None]:
        """source ``{"audio": [B, F, T] | None, "video": [B, 1, T, H, W] | None}``, padding_mask
        [B, T] -> ``encoder_out`` [T, B, D] and the padding mask [B, T] (twice, under the two names
        fairseq code looks for)."""
        x, padding_mask = self.w2v_model.extract_finetune(source, padding_mask)
        return {"encoder_out": x.transpose(0, 1), "encoder_padding_mask": padding_mask, "padding_mask": padding_mask}

    def reorder_encoder_out(
        self, encoder_out: dict[str, torch.Tensor | None], new_order: torch.Tensor
    ) -> dict[str, torch.Tensor | None]:
        """Select batch entries (beam search): ``new_order`` [B'] indexes the batch."""
        reordered = dict(encoder_out)
        if encoder_out["encoder_out"] is not None:
            reordered["encoder_out"] = encoder_out["encoder_out"].index_select(1, new_order)
        for key in ("encoder_padding_mask", "padding_mask"):
            if encoder_out[key] is not None:
                reordered[key] = encoder_out[key].index_select(0, new_order)
        return reordered


def _encoder_overrides(cfg: AVHubertSeq2SeqConfig) -> dict[str, Any]:
    """Fine-tuning settings that replace the pretraining ones in the encoder config (the
    reference's ``arg_overrides``; its wav2vec mask names match no AV-HuBERT field and are inert)."""
    return {
        "dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout,
        "activation_dropout": cfg.activation_dropout,
        "dropout_input": cfg.dropout_input,
        "encoder_layerdrop": cfg.layerdrop,
        "feature_grad_mult": cfg.feature_grad_mult,
    }


def encoder_config(w2v_args: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> AVHubertConfig:
    """The :class:`AVHubertConfig` of a saved pretraining config (``{"model": ..., "task": ...}``),
    ignoring keys it does not declare."""
    model_cfg, task_cfg = w2v_args["model"], w2v_args["task"]
    names = {f.name for f in dataclasses.fields(AVHubertConfig)}
    kwargs = {k: model_cfg[k] for k in model_cfg if k in names}
    if "latent_temp" in kwargs:
        kwargs["latent_temp"] = tuple(kwargs["latent_temp"])
    if not isinstance(kwargs.get("label_rate"), (int, float)):
        kwargs["label_rate"] = task_cfg.get("label_rate", task_cfg.get("sample_rate", FPS))
    kwargs.update(overrides or {})
    return AVHubertConfig(**kwargs)


def _as_plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


# Saved configs of this name are upgraded to the dataclass on load (dropped keys are logged).
register_config_upgrade("model", "av_hubert_seq2seq", AVHubertSeq2SeqConfig)


@register_model("av_hubert_seq2seq", dataclass=AVHubertSeq2SeqConfig)
class AVHubertSeq2Seq(FairseqEncoderDecoderModel):
    """AV-HuBERT encoder + transformer decoder, trained with label-smoothed cross-entropy.

    The encoder runs under ``no_grad`` while fewer than ``freeze_finetune_updates`` updates have
    been made.
    """

    def __init__(
        self, encoder: AVHubertEncoderWrapper, decoder: TransformerDecoder, cfg: AVHubertSeq2SeqConfig
    ) -> None:
        super().__init__(encoder, decoder)
        self.cfg = cfg
        self.freeze_finetune_updates = cfg.freeze_finetune_updates
        self.num_updates = 0

    @classmethod
    def build_model(cls, cfg: AVHubertSeq2SeqConfig, task: Any) -> "AVHubertSeq2Seq":
        if cfg.apply_mask:
            raise ValueError("av_hubert_seq2seq: apply_mask is not supported (no published configuration uses it)")
        pretrained = None
        if cfg.w2v_args is None:
            pretrained = cls.load_pretrained(cfg.w2v_path)
            with open_dict(cfg) if OmegaConf.is_config(cfg) else contextlib.nullcontext():
                cfg.w2v_args = _as_plain(pretrained["cfg"])
        w2v_args = _as_plain(cfg.w2v_args)
        if bool(cfg.normalize) != bool(w2v_args["task"].get("normalize", False)):
            raise ValueError(
                f"task.normalize={cfg.normalize} but the encoder was pretrained with "
                f"normalize={w2v_args['task'].get('normalize')}: audio features would be out of distribution"
            )

        num_classes = cls._pretraining_classes(task, pretrained)
        w2v_model = AVHubertModel(encoder_config(w2v_args, _encoder_overrides(cfg)), num_classes)
        w2v_model.remove_pretraining_modules()
        if pretrained is not None and not cfg.no_pretrained_weights:
            weights = {k: v for k, v in pretrained["model"].items() if not k.startswith("final_proj.")}
            w2v_model.load_state_dict(weights, strict=True)
            logger.info("loaded the pretrained encoder from %s", cfg.w2v_path)

        dictionary = task.target_dictionary
        if dictionary is None:
            raise ValueError("av_hubert_seq2seq needs a target dictionary (task.fine_tuning=true, is_s2s=true)")
        embed_tokens = build_embedding(dictionary, cfg.decoder_embed_dim)
        decoder = TransformerDecoder(cfg, dictionary, embed_tokens, w2v_model.encoder_embed_dim)
        return cls(AVHubertEncoderWrapper(w2v_model), decoder, cfg)

    @staticmethod
    def load_pretrained(path: str) -> dict[str, Any]:
        """A pretrained ``av_hubert`` checkpoint (safe loading, upgraded config)."""
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        name = (state.get("cfg") or {}).get("model", {}).get("_name")
        if name != "av_hubert":
            raise ValueError(
                f"{path}: w2v_path must be a pretrained AV-HuBERT checkpoint (model 'av_hubert'), "
                f"this one holds {name!r}"
            )
        return state

    @staticmethod
    def _pretraining_classes(task: Any, pretrained: dict[str, Any] | None) -> list[int]:
        """Sizes of the pretraining label sets (they size the unused ``label_embs_concat``).

        From the pretrained file when fine-tuning starts; its dictionaries are then kept in the
        task state so the fine-tuned file carries them as published files do. From the task state
        when a fine-tuned file loads; a file without them gets its size from the weights
        (:meth:`upgrade_state_dict_named`)."""
        if pretrained is not None:
            dictionaries = (pretrained.get("task_state") or {}).get("dictionaries")
            if dictionaries:
                task.state.merge_state_dict({"dictionaries": dictionaries})
                return [len(d) for d in dictionaries]
            return [pretrained["model"]["label_embs_concat"].size(0)]
        dictionaries = task.state.state_dict.get("dictionaries")
        return [len(d) for d in dictionaries] if dictionaries else [1]

    def upgrade_state_dict_named(self, state_dict: dict[str, torch.Tensor], name: str) -> None:
        key = f"{name}.encoder.w2v_model.label_embs_concat" if name else "encoder.w2v_model.label_embs_concat"
        w2v_model = self.encoder.w2v_model
        if key in state_dict and state_dict[key].shape != w2v_model.label_embs_concat.shape:
            # Unused after pretraining; its size follows the file.
            w2v_model.label_embs_concat = torch.nn.Parameter(state_dict[key].new_empty(state_dict[key].shape))
            w2v_model.num_classes = [state_dict[key].size(0)]
        super().upgrade_state_dict_named(state_dict, name)

    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.num_updates = num_updates

    def drop_stream(self, source: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
        """With probability ``modality_dropout`` (when both streams are given), the batch without
        one stream (None: zeros after its front end, as at single-stream inference): the audio
        with probability ``audio_dropout``, else the video."""
        if self.cfg.modality_dropout <= 0 or source.get("audio") is None or source.get("video") is None:
            return source
        drop, which = torch.rand(2).tolist()
        if drop >= self.cfg.modality_dropout:
            return source
        return {**source, ("audio" if which < self.cfg.audio_dropout else "video"): None}

    def forward(
        self,
        source: dict[str, torch.Tensor | None],
        prev_output_tokens: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        **unused: Any,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Teacher-forced decoding: logits [B, U, V] for prev_output_tokens [B, U]."""
        if self.training:
            source = self.drop_stream(source)
        frozen = self.num_updates < self.freeze_finetune_updates
        with torch.no_grad() if frozen else contextlib.nullcontext():
            encoder_out = self.encoder(source, padding_mask=padding_mask)
        return self.decoder(prev_output_tokens, encoder_out=encoder_out)
