"""The FFT form of the positional convolution (used on CUDA) equals ``F.conv1d``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sf_fairseq.models.transformer import WeightNormConv1d, grouped_conv1d_fft

# The tests seed torch's global RNG (model initialisation and the criteria draw from it).
pytestmark = pytest.mark.usefixtures("restore_torch_rng")


@pytest.mark.parametrize(("channels", "groups", "kernel"), [(12, 3, 8), (12, 4, 7), (6, 1, 128)])
def test_fft_form_equals_conv1d_with_gradients(channels: int, groups: int, kernel: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, channels, 40, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(channels, channels // groups, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(channels, dtype=torch.float64, requires_grad=True)
    padding = kernel // 2

    ours = grouped_conv1d_fft(x, weight, bias, padding, groups)
    reference = F.conv1d(x, weight, bias, padding=padding, groups=groups)
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-10)

    upstream = torch.randn_like(reference)
    ours_grads = torch.autograd.grad(ours, (x, weight, bias), upstream)
    reference_grads = torch.autograd.grad(reference, (x, weight, bias), upstream)
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fft_form_of_the_base_positional_conv_in_float32_and_bfloat16() -> None:
    torch.manual_seed(0)
    conv = WeightNormConv1d(768, 128, 16, dropout=0.1)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 768, 50)
    reference = conv(x)  # CPU: F.conv1d
    ours = grouped_conv1d_fft(x, conv.weight(), conv.bias, conv.padding, conv.groups)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)

    # Computed in float32 whatever the input, returned in the input's dtype (the encoder adds it
    # to its bf16 stream when the scorer stores weights in bf16).
    ours_bf16 = grouped_conv1d_fft(x.bfloat16(), conv.weight().bfloat16(), conv.bias.bfloat16(), 64, 16)
    assert ours_bf16.dtype == torch.bfloat16
    torch.testing.assert_close(ours_bf16.float(), reference, rtol=0.05, atol=0.05)
