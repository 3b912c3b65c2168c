"""Transformer decoder of the fine-tuned AV-HuBERT sequence-to-sequence model.

Same modules and parameter names as the reference decoder (itself fairseq's wav2vec2 seq2seq
decoder): ``embed_tokens``, ``embed_positions`` (sinusoidal, or learned with a ``weight``),
``layers.{i}`` = fairseq ``TransformerDecoderLayerBase`` (``self_attn``, ``encoder_attn``,
``{self_attn,encoder_attn,final}_layer_norm``, ``fc1``, ``fc2``), ``layer_norm`` (pre-LN only) and
``embed_out`` (only when the output projection is not tied to ``embed_tokens``).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from fairseq.data import Dictionary
from fairseq.models import FairseqIncrementalDecoder
from fairseq.models.transformer import TransformerConfig
from fairseq.modules import PositionalEmbedding
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase
from torch import nn


class DecoderConfig(Protocol):
    """The decoder fields of :class:`~sf_fairseq.models.av_hubert_seq2seq.AVHubertSeq2SeqConfig`."""

    decoder_embed_dim: int
    decoder_ffn_embed_dim: int
    decoder_layers: int
    decoder_layerdrop: float
    decoder_attention_heads: int
    decoder_learned_pos: bool
    decoder_normalize_before: bool
    no_token_positional_embeddings: bool
    decoder_dropout: float
    decoder_attention_dropout: float
    decoder_activation_dropout: float
    max_target_positions: int
    share_decoder_input_output_embed: bool
    no_scale_embedding: bool


def build_embedding(dictionary: Dictionary, embed_dim: int) -> nn.Embedding:
    """Token embedding initialised N(0, embed_dim^-0.5) with a zero padding row."""
    embedding = nn.Embedding(len(dictionary), embed_dim, padding_idx=dictionary.pad())
    nn.init.normal_(embedding.weight, mean=0, std=embed_dim**-0.5)
    nn.init.constant_(embedding.weight[dictionary.pad()], 0)
    return embedding


def layer_config(cfg: DecoderConfig, encoder_embed_dim: int) -> TransformerConfig:
    """fairseq's layer config for one decoder block. Encoder attention takes keys/values of the
    encoder's width (the reference had to be patched for this on fairseq 0.12, where the layer
    otherwise assumes 512)."""
    layer_cfg = TransformerConfig()
    layer_cfg.decoder.embed_dim = cfg.decoder_embed_dim
    layer_cfg.decoder.ffn_embed_dim = cfg.decoder_ffn_embed_dim
    layer_cfg.decoder.attention_heads = cfg.decoder_attention_heads
    layer_cfg.decoder.normalize_before = cfg.decoder_normalize_before
    layer_cfg.encoder.embed_dim = encoder_embed_dim
    layer_cfg.dropout = cfg.decoder_dropout
    layer_cfg.attention_dropout = cfg.decoder_attention_dropout
    layer_cfg.activation_dropout = cfg.decoder_activation_dropout
    layer_cfg.activation_fn = "relu"
    return layer_cfg


class TransformerDecoder(FairseqIncrementalDecoder):
    """Autoregressive decoder attending to the AV-HuBERT encoder output.

    Args:
        cfg: decoder fields of the seq2seq config.
        dictionary: target dictionary (SentencePiece pieces + fairseq's 4 specials).
        embed_tokens: token embedding [V, decoder_embed_dim].
        encoder_embed_dim: width of the encoder output (keys/values of encoder attention).
    """

    def __init__(
        self, cfg: DecoderConfig, dictionary: Dictionary, embed_tokens: nn.Embedding, encoder_embed_dim: int
    ) -> None:
        super().__init__(dictionary)
        embed_dim = cfg.decoder_embed_dim
        if embed_tokens.embedding_dim != embed_dim:
            raise ValueError(
                f"token embedding width {embed_tokens.embedding_dim} != decoder_embed_dim {embed_dim}"
            )
        self.dropout = cfg.decoder_dropout
        self.layerdrop = cfg.decoder_layerdrop
        self.share_input_output_embed = cfg.share_decoder_input_output_embed
        self.padding_idx = embed_tokens.padding_idx
        self.max_target_positions = cfg.max_target_positions
        self.embed_tokens = embed_tokens
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(embed_dim)
        self.embed_positions = (
            None
            if cfg.no_token_positional_embeddings
            else PositionalEmbedding(
                cfg.max_target_positions, embed_dim, self.padding_idx, learned=cfg.decoder_learned_pos
            )
        )
        layer_cfg = layer_config(cfg, encoder_embed_dim)
        self.layers = nn.ModuleList(TransformerDecoderLayerBase(layer_cfg) for _ in range(cfg.decoder_layers))
        self.embed_out: nn.Parameter | None = None
        if not self.share_input_output_embed:
            self.embed_out = nn.Parameter(torch.empty(len(dictionary), embed_dim))
            nn.init.normal_(self.embed_out, mean=0, std=embed_dim**-0.5)
        self.layer_norm = nn.LayerNorm(embed_dim) if cfg.decoder_normalize_before else None

    def forward(
        self,
        prev_output_tokens: torch.Tensor,
        encoder_out: dict[str, torch.Tensor | None] | None = None,
        incremental_state: dict[str, dict[str, torch.Tensor | None]] | None = None,
        **unused: Any,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """prev_output_tokens [B, U] (``</s>`` first) -> logits [B, U, V] (the last step only
        [B, 1, V] when decoding incrementally) and ``{"attn", "inner_states"}``."""
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return self.output_layer(x), extra

    def extract_features(
        self,
        prev_output_tokens: torch.Tensor,
        encoder_out: dict[str, torch.Tensor | None] | None = None,
        incremental_state: dict[str, dict[str, torch.Tensor | None]] | None = None,
        **unused: Any,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Decoder states [B, U, D] before the output projection."""
        prev_output_tokens = prev_output_tokens.long()
        positions = None
        if self.embed_positions is not None:
            positions = self.embed_positions(prev_output_tokens, incremental_state=incremental_state)
        if incremental_state is not None:
            # Earlier steps live in the attention caches: only the newest token is embedded.
            prev_output_tokens = prev_output_tokens[:, -1:]
            if positions is not None:
                positions = positions[:, -1:]
        x = self.embed_scale * self.embed_tokens(prev_output_tokens)
        if positions is not None:
            x = x + positions
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = x.transpose(0, 1)  # [U, B, D]

        self_attn_padding_mask = None
        if prev_output_tokens.eq(self.padding_idx).any():
            self_attn_padding_mask = prev_output_tokens.eq(self.padding_idx)
        enc = encoder_out["encoder_out"] if encoder_out is not None else None
        enc_mask = encoder_out["padding_mask"] if encoder_out is not None else None
        attn = None
        inner_states = [x]
        for layer in self.layers:
            if self.training and self.layerdrop > 0 and torch.rand(()).item() < self.layerdrop:
                continue
            x, attn, _ = layer(
                x,
                enc,
                enc_mask,
                incremental_state,
                self_attn_mask=self.buffered_future_mask(x) if incremental_state is None else None,
                self_attn_padding_mask=self_attn_padding_mask,
            )
            inner_states.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return x.transpose(0, 1), {"attn": attn, "inner_states": inner_states}

    def output_layer(self, features: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """[B, U, D] -> logits [B, U, V] through the tied embedding or ``embed_out``."""
        weight = self.embed_tokens.weight if self.embed_out is None else self.embed_out
        return F.linear(features, weight)

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return self.max_target_positions
        return min(self.max_target_positions, self.embed_positions.max_positions)

    def buffered_future_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Causal mask [U, U] (-inf above the diagonal) for x [U, B, D], cached per size/device."""
        size = x.size(0)
        mask = getattr(self, "_future_mask", None)
        if mask is None or mask.size(0) < size or mask.device != x.device:
            mask = torch.triu(torch.full((size, size), float("-inf"), device=x.device), 1)
            self._future_mask = mask
        return self._future_mask[:size, :size].to(x.dtype)
