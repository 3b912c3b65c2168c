"""The wav2vec 2.0-style transformer encoder AV-HuBERT uses.

Parameter names match fairseq's ``wav2vec2.TransformerEncoder`` (``pos_conv.0.weight_g``,
``layers.{i}.self_attn.{q,k,v,out}_proj``, ``layers.{i}.{self_attn_layer_norm,fc1,fc2,
final_layer_norm}``, ``layer_norm``), so AV-HuBERT checkpoints load strictly; attention runs through
``scaled_dot_product_attention`` so fused CPU/GPU kernels and bf16 apply.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def init_bert_params(module: nn.Module) -> None:
    """BERT initialisation as fairseq applies it: N(0, 0.02) for linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class WeightNormConv1d(nn.Module):
    """Conv1d whose weight is ``g * v / ||v||`` with the norm over all but the kernel axis
    (``torch.nn.utils.weight_norm(conv, dim=2)``), stored as ``weight_g``/``weight_v``."""

    def __init__(self, channels: int, kernel_size: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.groups = groups
        std = math.sqrt((4 * (1.0 - dropout)) / (kernel_size * channels))
        weight = torch.empty(channels, channels // groups, kernel_size).normal_(0.0, std)
        self.weight_v = nn.Parameter(weight)
        self.weight_g = nn.Parameter(weight.norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(channels))

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, D, T] -> [B, D, T + 1 - kernel_size % 2]."""
        if x.is_cuda:
            # cuDNN has no fast kernel for BASE's 48 channels per group; this took a fifth of a
            # BASE bf16 training step on an H100, where the FFT form is ~5x cheaper.
            return grouped_conv1d_fft(x, self.weight(), self.bias, self.padding, self.groups)
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


def grouped_conv1d_fft(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: int, groups: int
) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, padding=padding, groups=groups)`` through the FFT.

    x: [B, Cin, T]; weight: [Cout, Cin/G, K]; bias: [Cout] -> [B, Cout, T + 2*padding - K + 1],
    in x's dtype, computed in float32 (float64 for float64 input) whatever autocast says. The
    cross-correlation is a convolution with the flipped kernel; with an FFT length of the padded
    input (n = T + 2*padding) the circular wrap-around only reaches outputs before index K - 1,
    which are dropped. Per frequency, each group is a [B, Cin/G] x [Cin/G, Cout/G] complex matmul.
    """
    batch, frames = x.shape[0], x.shape[2]
    out_channels, in_per_group, kernel = weight.shape
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    length = frames + 2 * padding
    with torch.autocast(x.device.type, enabled=False):
        signal = torch.fft.rfft(F.pad(x.to(dtype), (padding, padding)), n=length)  # [B, Cin, F]
        signal = signal.view(batch, groups, in_per_group, -1).permute(1, 3, 0, 2)  # [G, F, B, Cin/G]
        response = torch.fft.rfft(weight.to(dtype).flip(-1), n=length)  # [Cout, Cin/G, F]
        response = response.view(groups, out_channels // groups, in_per_group, -1)
        response = response.permute(0, 3, 2, 1)  # [G, F, Cin/G, Cout/G]
        out = torch.matmul(signal, response)  # [G, F, B, Cout/G]
        out = out.permute(2, 0, 3, 1).reshape(batch, out_channels, -1)  # [B, Cout, F]
        out = torch.fft.irfft(out, n=length)[..., kernel - 1 :]  # [B, Cout, T + 2*padding - K + 1]
        return (out + bias.to(dtype).unsqueeze(-1)).to(x.dtype)


class SamePad(nn.Module):
    """Drop the extra frame an even kernel with ``padding = k // 2`` produces."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.size(-1) - self.remove] if self.remove else x


class SelfAttention(nn.Module):
    """Multi-head self-attention with fairseq's projection names."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B, T, D]; padding_mask: [B, T] (True = padding) -> [B, T, D]."""
        batch, frames, dim = x.shape
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, frames, heads, dim // heads).transpose(1, 2)  # [B, H, T, D/H]

        attn_mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            split(self.q_proj(x)),
            split(self.k_proj(x)),
            split(self.v_proj(x)),
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, dim))


class TransformerEncoderLayer(nn.Module):
    """One block: self-attention and a feed-forward net, each with a residual connection.
    Pre-LN (``layer_norm_first``, all AV-HuBERT configs) or post-LN."""

    def __init__(
        self,
        embed_dim: int,
        ffn_dim: int,
        num_heads: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        layer_norm_first: bool,
    ) -> None:
        super().__init__()
        self.self_attn = SelfAttention(embed_dim, num_heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.layer_norm_first = layer_norm_first

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B, T, D] -> [B, T, D]."""
        if self.layer_norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), padding_mask))
            return x + self._feed_forward(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, padding_mask)))
        return self.final_layer_norm(x + self._feed_forward(x))


class TransformerEncoder(nn.Module):
    """Convolutional relative positions, then a stack of transformer blocks.

    ``forward(x, padding_mask, layer=None)`` returns the final LayerNorm output for pre-LN
    stacks; ``layer=L`` (1-based) stops after block ``L`` and returns its raw residual stream, as
    AV-HuBERT's ``output_layer`` does.
    """

    def __init__(
        self,
        embed_dim: int,
        ffn_dim: int,
        num_layers: int,
        num_heads: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        layer_norm_first: bool = False,
        layerdrop: float = 0.0,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
    ) -> None:
        super().__init__()
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(embed_dim, conv_pos, conv_pos_groups, dropout),
            SamePad(conv_pos),
            nn.GELU(),
        )
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                embed_dim,
                ffn_dim,
                num_heads,
                dropout,
                attention_dropout,
                activation_dropout,
                layer_norm_first,
            )
            for _ in range(num_layers)
        )
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm_first = layer_norm_first
        self.layerdrop = layerdrop
        self.apply(init_bert_params)

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, layer: int | None = None
    ) -> torch.Tensor:
        """x: [B, T, D]; padding_mask: [B, T] (True = padding); layer: 1-based or None."""
        if layer is not None and not 1 <= layer <= len(self.layers):
            raise ValueError(f"output layer {layer} outside 1..{len(self.layers)}")
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        last = len(self.layers) if layer is None else layer
        if self.training and self.layerdrop > 0:
            keep = torch.rand(last) >= self.layerdrop
        else:
            keep = torch.ones(last, dtype=torch.bool)
        for index in range(last):
            if keep[index]:
                x = self.layers[index](x, padding_mask)
        if self.layer_norm_first and layer is None:
            x = self.layer_norm(x)
        return x
