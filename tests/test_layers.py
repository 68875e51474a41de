"""PartialConv2d against a brute-force implementation of the paper's equation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pconv_hf import PartialConv2d


def reference_partial_conv(conv: nn.Conv2d, x: torch.Tensor, mask: torch.Tensor):
    """Eq. 1-2 of the paper, window by window with unfold: the slow, obviously-correct version."""
    mask = mask.expand_as(x)
    kwargs = dict(kernel_size=conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    x_windows = F.unfold(x * mask, **kwargs)  # (N, C_in*kh*kw, L)
    mask_windows = F.unfold(mask, **kwargs)
    window_size = mask_windows.shape[1]  # sum(1): every input element under the window
    valid_sum = mask_windows.sum(dim=1, keepdim=True)  # sum(M), (N, 1, L)
    raw = conv.weight.flatten(1) @ x_windows  # W^T (X*M), (N, C_out, L)
    has_valid = valid_sum > 0
    out = torch.where(has_valid, raw * window_size / valid_sum.clamp(min=1), torch.zeros_like(raw))
    if conv.bias is not None:
        out = torch.where(has_valid, out + conv.bias.view(1, -1, 1), out)
    n = x.shape[0]
    height = (x.shape[2] + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
    width = (x.shape[3] + 2 * conv.padding[1] - conv.dilation[1] * (conv.kernel_size[1] - 1) - 1) // conv.stride[1] + 1
    return out.view(n, -1, height, width), has_valid.to(x.dtype).view(n, 1, height, width)


def random_mask(n, channels, height, width, hole_fraction, generator):
    return (torch.rand(n, channels, height, width, generator=generator, dtype=torch.float64) > hole_fraction).double()


@pytest.mark.parametrize("mask_channels", [1, 4])
@pytest.mark.parametrize(
    "kernel_size, stride, padding, dilation, bias",
    [
        (3, 1, 1, 1, True),
        (3, 2, 1, 1, False),
        (5, 2, 2, 1, True),
        (7, 2, 3, 1, True),
        (3, 1, 0, 1, True),
        ((3, 5), (1, 2), (1, 2), 1, True),
        (3, 1, 2, 2, False),
    ],
)
def test_matches_brute_force_reference(mask_channels, kernel_size, stride, padding, dilation, bias):
    generator = torch.Generator().manual_seed(1)
    conv = PartialConv2d(4, 6, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias).double()
    with torch.no_grad():
        conv.weight.normal_(generator=generator)
        if bias:
            conv.bias.normal_(generator=generator)
    x = torch.randn(2, 4, 13, 17, generator=generator, dtype=torch.float64)
    # Large holes so that some windows see no valid pixel at all.
    mask = random_mask(2, mask_channels, 13, 17, 0.6, generator)
    mask[:, :, 1:12, 2:15] = 0

    output, updated_mask = conv(x, mask)
    expected_output, expected_mask = reference_partial_conv(conv, x, mask)

    assert updated_mask.shape == (2, 1, *expected_output.shape[-2:])
    assert torch.equal(updated_mask, expected_mask)
    assert 0 < updated_mask.mean() < 1, "the test must exercise both kinds of windows"
    torch.testing.assert_close(output, expected_output, rtol=1e-10, atol=1e-10)


def test_all_valid_without_padding_equals_conv2d():
    torch.manual_seed(0)
    pconv = PartialConv2d(3, 8, 3, stride=2)
    conv = nn.Conv2d(3, 8, 3, stride=2)
    conv.load_state_dict(pconv.state_dict())
    x = torch.randn(2, 3, 16, 16)
    output, updated_mask = pconv(x, torch.ones(2, 1, 16, 16))
    torch.testing.assert_close(output, conv(x))
    assert torch.all(updated_mask == 1)


def test_padding_counts_as_hole():
    """With an all-valid mask and padding, border windows are re-weighted, so they differ from Conv2d."""
    torch.manual_seed(0)
    pconv = PartialConv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        pconv.weight.fill_(1.0)
    output, _ = pconv(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 5, 5))
    # Every window averages ones, so sum(1)/sum(M) rescaling gives exactly 9 everywhere, corners included.
    torch.testing.assert_close(output, torch.full((1, 1, 5, 5), 9.0))


def test_all_hole_windows_give_zero_not_nan():
    pconv = PartialConv2d(3, 4, 3, padding=1)
    output, updated_mask = pconv(torch.randn(1, 3, 8, 8), torch.zeros(1, 1, 8, 8))
    assert torch.isfinite(output).all()
    assert torch.all(output == 0)
    assert torch.all(updated_mask == 0)


def test_no_gradient_from_hole_pixels():
    torch.manual_seed(0)
    pconv = PartialConv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 2:5, 3:6] = 0
    output, _ = pconv(x, mask)
    output.square().sum().backward()
    hole = (mask == 0).expand_as(x)
    assert torch.all(x.grad[hole] == 0)
    assert torch.all(x.grad[~hole] != 0)
    # The hole values cannot change the output either.
    x2 = x.detach().clone()
    x2[hole] = 1e6
    torch.testing.assert_close(pconv(x2, mask)[0], output.detach())


def test_ones_kernel_is_a_nonpersistent_buffer_and_no_state_is_cached():
    pconv = PartialConv2d(3, 4, 3, padding=1)
    assert set(pconv.state_dict()) == {"weight", "bias"}
    assert "window_ones" in dict(pconv.named_buffers())
    before = {name: value.clone() for name, value in pconv.__dict__.items() if isinstance(value, torch.Tensor)}
    x = torch.randn(1, 3, 8, 8)
    first = pconv(x, torch.ones(1, 1, 8, 8))[0]
    pconv(x, torch.zeros(1, 1, 8, 8))
    second = pconv(x, torch.ones(1, 1, 8, 8))[0]
    assert torch.equal(first, second)
    after = {name: value for name, value in pconv.__dict__.items() if isinstance(value, torch.Tensor)}
    assert before.keys() == after.keys()


def test_mixed_precision_counts_stay_exact():
    """bf16 autocast must not round the valid counts (up to C_in*kh*kw)."""
    torch.manual_seed(0)
    pconv = PartialConv2d(512, 8, 3, padding=1)
    x = torch.randn(1, 512, 8, 8)
    mask = (torch.rand(1, 512, 8, 8) > 0.3).float()
    reference, _ = pconv(x, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, updated_mask = pconv(x, mask)
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), reference, rtol=0.05, atol=0.1)


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(groups=2), "groups"), (dict(padding_mode="reflect"), "padding_mode"), (dict(padding="same"), "padding")],
)
def test_rejects_unsupported_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PartialConv2d(4, 4, 3, **kwargs)


def test_rejects_mismatched_mask():
    pconv = PartialConv2d(3, 4, 3, padding=1)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\) or \(N, 3, H, W\)"):
        pconv(torch.randn(1, 3, 8, 8), torch.ones(1, 2, 8, 8))
    with pytest.raises(ValueError, match="does not match"):
        pconv(torch.randn(1, 3, 8, 8), torch.ones(1, 1, 8, 9))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("bias", [False, True])
def test_convolution_of_the_upsampled_input_equals_upsampling_first(bias, memory_format):
    """The decoder's inference path: a 3x3 convolution of a nearest-upsampled input, computed at the input's size,
    in the input's memory format."""
    from pconv_hf.layers import conv3x3_nearest_upsampled

    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 7, 9, generator=generator, dtype=torch.float64).contiguous(memory_format=memory_format)
    weight = torch.randn(4, 5, 3, 3, generator=generator, dtype=torch.float64)
    bias_values = torch.randn(4, generator=generator, dtype=torch.float64) if bias else None
    expected = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias_values, padding=1)
    output = conv3x3_nearest_upsampled(x, weight, bias_values)
    assert output.shape == expected.shape == (2, 4, 14, 18)
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
    assert output.is_contiguous(memory_format=memory_format)
    # Under bf16 autocast it rounds like the plain path, not worse.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = conv3x3_nearest_upsampled(x.float(), weight.float()).float()
        plain = F.conv2d(F.interpolate(x.float(), scale_factor=2, mode="nearest"), weight.float(), padding=1).float()
    exact = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)
    assert (fast - exact).abs().max() <= 2 * (plain - exact).abs().max() + 1e-3
