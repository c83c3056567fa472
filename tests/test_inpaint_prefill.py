"""The smooth first guess of the hole (inpaint.prefill: smooth) and the generator that starts from it."""

import pytest
import torch

from ganforge.errors import ConfigError
from ganforge.inpaint.masks import make_masks
from ganforge.models.encoder_decoder import InpaintGenerator
from ganforge.models.prefill import smooth_fill


def _ramp(h=64, w=64):
    """(2, 3, h, w): a horizontal ramp and a vertical one, different per channel."""
    ys, xs = torch.meshgrid(torch.linspace(-0.8, 0.8, h), torch.linspace(-0.8, 0.8, w), indexing="ij")
    a = torch.stack([xs, 0.5 * xs, -xs])
    b = torch.stack([ys, -0.5 * ys, 0.3 * ys])
    return torch.stack([a, b])


@pytest.mark.parametrize("h, w", [(64, 64), (37, 50), (200, 120)])
def test_known_pixels_unchanged_and_constants_exact(h, w):
    mask = make_masks("thick", 2, (h, w), 0.3, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, h, w) * 2 - 1
    out = smooth_fill(x, mask)
    assert torch.equal(out[mask.expand_as(x) == 0], x[mask.expand_as(x) == 0])
    const = torch.full((2, 3, h, w), 0.37)
    assert torch.allclose(smooth_fill(const, mask), const, atol=1e-6)


def test_ramps_are_interpolated_far_better_than_a_constant():
    x = _ramp()
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:48, 20:44] = 1
    hole = mask.bool().expand_as(x)
    err = (smooth_fill(x, mask) - x).abs()[hole].mean()
    mean_fill = (x * (1 - mask)).sum((2, 3), keepdim=True) / (1 - mask).sum((2, 3), keepdim=True)
    err_mean = (mean_fill.expand_as(x) - x).abs()[hole].mean()
    assert err < 0.02 < err_mean / 5  # a harmonic fill reproduces a linear function


def test_fully_masked_image_gets_zero_and_no_nan():
    out = smooth_fill(torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_untrained_generator_returns_the_smooth_fill_and_learns(upsample):
    torch.manual_seed(0)
    g = InpaintGenerator(3, width=8, res_blocks=2, prefill="smooth", upsample=upsample)
    x = torch.rand(2, 3, 30, 34) * 2 - 1
    mask = make_masks("boxes", 2, (30, 34), 0.3, torch.Generator().manual_seed(1))
    out, raw = g(x, mask, return_raw=True)
    expected = torch.where(mask > 0, smooth_fill(x, mask).clamp(-0.999, 0.999), x)
    assert torch.allclose(out, expected, atol=1e-6)
    assert raw.abs().max() < 1
    # The zero-initialised last convolution still receives a gradient, so training moves off the fill.
    (raw - x).abs().mean().backward()
    assert g.decoder[-1].weight.grad.abs().sum() > 0


def test_unknown_prefill_is_a_config_error():
    with pytest.raises(ConfigError, match="inpaint.prefill"):
        InpaintGenerator(3, prefill="telea")
