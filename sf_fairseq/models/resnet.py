"""Lip front end: a 3D-convolution stem followed by a 2D ResNet-18 trunk applied per frame.

Module and parameter names follow AV-HuBERT's ``ResEncoder`` so published state dicts load
strictly: ``frontend3D.{0,1,2}`` and ``trunk.layer{1..4}.{0,1}.{conv1,bn1,relu1,conv2,bn2,relu2,
downsample}``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RESNET18_LAYERS = (2, 2, 2, 2)
# Channels of the four stages relative to the first; AV-HuBERT's ResNet-18 has 64 (64..512).
RESNET18_WIDTH = 64
STAGE_MULTIPLIERS = (1, 2, 4, 8)


def _activation(relu_type: str, channels: int) -> nn.Module:
    if relu_type == "prelu":
        return nn.PReLU(num_parameters=channels)
    if relu_type == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown resnet_relu_type {relu_type!r} (expected 'prelu' or 'relu')")


class BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN, plus the (projected) input, then act."""

    def __init__(self, in_planes: int, planes: int, stride: int, relu_type: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = _activation(relu_type, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = _activation(relu_type, planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + residual)


class ResNetTrunk(nn.Module):
    """ResNet-18 body without stem or classifier: [N, width, H, W] -> [N, 8 * width]."""

    def __init__(self, relu_type: str, width: int = RESNET18_WIDTH) -> None:
        super().__init__()
        in_planes = width
        for index, (blocks, multiplier) in enumerate(zip(RESNET18_LAYERS, STAGE_MULTIPLIERS)):
            planes = multiplier * width
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                layer.append(BasicBlock(in_planes, planes, stride if block == 0 else 1, relu_type))
                in_planes = planes
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def stem_channel_multiple(video: torch.Tensor) -> int:
    """The stem convolution's input channels are padded to a multiple of this. Tensor cores take
    channels in multiples of 8, so on CUDA the 5 neighbour frames are padded to 8 (zero weights:
    the result is unchanged), which made the stem ~3x faster on an H100; oneDNN on CPU would only
    do the extra work."""
    return 8 if video.is_cuda else 1


class ResEncoder(nn.Module):
    """Mouth-ROI clip to per-frame ``8 * width``-d features (512 as published); time is never
    down-sampled.

    Args:
        relu_type: ``"prelu"`` (AV-HuBERT's configs) or ``"relu"``.
        width: channels of the first stage (64 as published). The trunk's convolutions cost
            about ``width**2``: at 16 a CPU training step of a tiny model spends ~8x less here.
    """

    def __init__(self, relu_type: str = "prelu", width: int = RESNET18_WIDTH) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"resnet width must be positive, got {width}")
        self.output_dim = STAGE_MULTIPLIERS[-1] * width
        stem_channels = width
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, stem_channels, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            # Applied to the frames folded into the batch: the statistics of the reference's
            # BatchNorm3d over (B, T, H, W), and the same state-dict entries.
            nn.BatchNorm2d(stem_channels),
            _activation(relu_type, stem_channels),
        )
        # The reference's MaxPool3d((1, 3, 3), stride (1, 2, 2)) pools each frame on its own, so
        # it is a 2D pool of the folded frames (no parameters: the state dict is unchanged).
        self.trunk = ResNetTrunk(relu_type, width)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                fan_out = math.prod(module.kernel_size[-2:]) * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stem(self, video: torch.Tensor) -> torch.Tensor:
        """video: [B, 1, T, H, W] -> per-frame stem features [B*T, width, H/2, W/2], channels-last.

        The 3D convolution of a one-channel clip is computed as the equal 2D convolution whose
        input channels are each frame's temporal neighbours: cuDNN and oneDNN run that form
        several times faster (the reference's 3D kernel took a sixth of a BASE training step
        on an H100). Channels-last makes the pooling, batch norms and convolutions of the trunk
        faster still (NHWC kernels, no layout conversions).
        """
        conv, norm, activation = self.frontend3D
        batch, _, frames, height, width = video.shape
        span, pad = conv.kernel_size[0], conv.padding[0]
        multiple = stem_channel_multiple(video)
        channels = -(-span // multiple) * multiple  # zero-padded, with zero weights
        x = F.pad(video[:, 0], (0, 0, 0, 0, pad, pad))  # [B, T + 2*pad, H, W]
        x = x.unfold(1, span, 1)  # [B, T, H, W, span]: frames t-pad .. t+pad (a view)
        x = F.pad(x, (0, channels - span))  # [B, T, H, W, channels]
        x = x.reshape(batch * frames, height, width, channels).permute(0, 3, 1, 2)  # [B*T, C, H, W]
        weight = conv.weight.flatten(1, 2)  # [width, 1, span, kH, kW] -> [width, span, kH, kW]
        weight = F.pad(weight, (0, 0, 0, 0, 0, channels - span))  # [width, channels, kH, kW]
        # A channels-last weight makes oneDNN write a channels-last output, so the batch norm,
        # activation and pooling after it need no layout conversion (on CPU, LARGE scoring
        # spent ~0.1 s per 10-second clip converting it).
        weight = weight.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, weight, stride=conv.stride[1:], padding=conv.padding[1:])  # [B*T, width, H/2, W/2]
        return activation(norm(x))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: [B, 1, T, H, W] -> features [B, 8 * width, T]."""
        batch, frames = video.shape[0], video.shape[2]
        x = self.stem(video)  # [B*T, width, H/2, W/2]
        x = F.max_pool2d(
            x.contiguous(memory_format=torch.channels_last), 3, stride=2, padding=1)  # [B*T, width, H/4, W/4]
        x = self.trunk(x)  # [B*T, 8 * width]
        return x.view(batch, frames, -1).transpose(1, 2)
