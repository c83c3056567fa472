"""PSNR, SSIM and L1, with and without masks."""

import math

import numpy as np
import pytest
import torch

from ganforge.metrics.restoration import l1, psnr, ssim, ssim_map


def pair(seed=0, shape=(2, 3, 24, 20), noise=0.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_psnr_known_value_and_identity():
    x = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    y = x + 0.1
    np.testing.assert_allclose(psnr(x, y, data_range=2.0), [10 * math.log10(4 / 0.01)] * 2, rtol=1e-9)
    assert torch.isinf(psnr(x, x)).all()


def test_masked_psnr_and_l1_use_masked_pixels_only():
    x, y = pair(1)
    mask = torch.zeros(2, 1, 24, 20)
    mask[:, :, 5:15, 3:9] = 1
    sel = mask.bool().expand_as(x)
    for i in range(2):
        err = (x[i][sel[i]] - y[i][sel[i]])
        assert psnr(x, y, 1.0, mask)[i] == pytest.approx(10 * math.log10(1 / err.pow(2).mean().item()))
        assert l1(x, y, mask)[i] == pytest.approx(err.abs().mean().item())
    # (N, H, W) and (H, W) masks are accepted too.
    torch.testing.assert_close(psnr(x, y, 1.0, mask[:, 0]), psnr(x, y, 1.0, mask[0, 0]))
    assert l1(x, y)[0] == pytest.approx((x[0] - y[0]).abs().mean().item())


def test_ssim_properties():
    x, y = pair(2)
    assert torch.allclose(ssim(x, x, 1.0), torch.ones(2, dtype=torch.float64))
    s = ssim(x, y, 1.0)
    assert ((s > 0) & (s < 1)).all()
    # Range invariance: [-1, 1] with data_range 2 equals [0, 1] with data_range 1.
    torch.testing.assert_close(ssim(2 * x - 1, 2 * y - 1, 2.0), s)
    torch.testing.assert_close(ssim(255 * x, 255 * y, 255.0), s)
    torch.testing.assert_close(ssim(2 * x - 1, 2 * y - 1, 2.0, low=-1.0), s)
    # SSIM compares means, so an offset changes it: the default low matters.
    assert not torch.allclose(ssim(2 * x - 1, 2 * y - 1, 2.0, low=0.0), s)
    full = ssim_map(x, y, 1.0, full=True)
    assert full.shape == x.shape and ssim_map(x, y, 1.0).shape == (2, 3, 14, 10)
    ones = torch.ones(24, 20)
    torch.testing.assert_close(ssim(x, y, 1.0, ones), full.flatten(1).mean(1))


def test_errors():
    x, y = pair(3)
    with pytest.raises(ValueError):
        psnr(x, y[:1])
    with pytest.raises(ValueError):
        l1(x, y, torch.zeros(24, 20))  # empty mask
    with pytest.raises(ValueError):
        psnr(x, y, mask=torch.ones(2, 1, 5, 5))
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_against_scikit_image():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image not installed (extra 'baselines')")
    x, y = pair(4, shape=(2, 3, 32, 27))
    kw = dict(data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
              use_sample_covariance=False)
    mask = torch.zeros(32, 27)
    mask[:9, 20:] = 1  # a hole touching two borders
    for i in range(2):
        a, b = x[i].numpy(), y[i].numpy()
        assert ssim(x, y, 1.0)[i] == pytest.approx(metrics.structural_similarity(a, b, **kw), abs=1e-10)
        _, smap = metrics.structural_similarity(a, b, full=True, **kw)
        expected = smap[:, mask.bool().numpy()].mean()
        assert ssim(x, y, 1.0, mask)[i] == pytest.approx(expected, abs=1e-10)
        assert psnr(x, y, 1.0)[i] == pytest.approx(metrics.peak_signal_noise_ratio(a, b, data_range=1.0))
    # Grayscale, [-1, 1] range: the same as scikit-image on the [0, 2] shifted images.
    g1, g2 = 2 * x[:1, :1] - 1, 2 * y[:1, :1] - 1
    ref = metrics.structural_similarity(g1[0, 0].numpy() + 1, g2[0, 0].numpy() + 1, data_range=2.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(g1, g2, 2.0)[0] == pytest.approx(ref, abs=1e-10)
