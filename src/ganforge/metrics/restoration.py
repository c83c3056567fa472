"""Full-reference restoration metrics: PSNR, SSIM and L1, optionally on a masked region.

All functions take batches ``(N, C, H, W)`` (float, any range) and return
one value per image, shape ``(N,)`` float64; average them yourself (the mean
of per-image PSNR is the usual convention, not the PSNR of the pooled MSE).

``data_range`` is the width of the value range: 2.0 for the project's
[-1, 1] images (the default), 1.0 for [0, 1], 255 for uint8 values.

Masks are ``(N, 1, H, W)``, ``(N, H, W)`` or ``(H, W)``, nonzero = pixel
counted (for inpainting: the hole), shared by all channels.

* PSNR with a mask ("hole PSNR"): the MSE is averaged over masked pixels
  (and channels) only.
* SSIM (Wang et al. 2004): Gaussian window 11x11 with sigma 1.5, K1 = 0.01,
  K2 = 0.03, population (not sample) covariances, channels averaged.
  SSIM is not invariant to an offset (its luminance term compares means), and
  its constants were defined for ranges starting at 0, so images are shifted
  by ``-low`` first: ``low`` defaults to -1 when ``data_range == 2`` (the
  project's [-1, 1] images) and to 0 otherwise ([0, 1], [0, 255]). Thus
  ``ssim(2x - 1, 2y - 1, 2.0) == ssim(x, y, 1.0)``.
  Without a mask the SSIM map is averaged over the "valid" region, the
  pixels whose whole window lies inside the image (a 5-pixel border is
  dropped), which matches scikit-image's ``structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``. With a
  mask the map is computed at every pixel with symmetric (half-sample)
  border extension, scikit-image's ``mode="reflect"``, and averaged over the
  masked pixels, so holes touching the border are measured too.
* L1: mean absolute error over all or masked pixels.

Images smaller than 11x11 cannot be scored by SSIM (ValueError).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WIN = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (N, C, H, W) batches of equal shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    return x.double(), y.double()


def _mask4(mask, x: torch.Tensor) -> torch.Tensor:
    """Mask as float64 ``(N, 1, H, W)`` of 0/1 on ``x``'s device."""
    m = torch.as_tensor(mask, device=x.device)
    if m.ndim == 2:
        m = m.expand(x.shape[0], -1, -1)
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[0] != x.shape[0] or m.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask shape {tuple(torch.as_tensor(mask).shape)} does not fit images "
                         f"{tuple(x.shape)}; expected (N, 1, H, W), (N, H, W) or (H, W)")
    m = (m != 0).double()
    if (m.flatten(1).sum(1) == 0).any():
        raise ValueError("mask selects no pixel in at least one image")
    return m


def _masked_mean(v: torch.Tensor, mask) -> torch.Tensor:
    """Per-image mean of ``v`` ``(N, C, H, W)`` over all pixels or the masked ones: ``(N,)``."""
    if mask is None:
        return v.flatten(1).mean(1)
    m = _mask4(mask, v)
    return (v * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * v.shape[1])


def mse(x: torch.Tensor, y: torch.Tensor, mask=None) -> torch.Tensor:
    """Per-image mean squared error ``(N,)``."""
    x, y = _check_pair(x, y)
    return _masked_mean((x - y) ** 2, mask)


def l1(x: torch.Tensor, y: torch.Tensor, mask=None) -> torch.Tensor:
    """Per-image mean absolute error ``(N,)``."""
    x, y = _check_pair(x, y)
    return _masked_mean((x - y).abs(), mask)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, mask=None) -> torch.Tensor:
    """Per-image PSNR in dB ``(N,)``: ``10 log10(data_range^2 / MSE)``; inf where MSE = 0."""
    e = mse(x, y, mask)
    return 10.0 * torch.log10(data_range ** 2 / e)  # x / 0 -> inf, which is the right answer


def _gaussian_window(device) -> torch.Tensor:
    r = torch.arange(WIN, dtype=torch.float64, device=device) - WIN // 2
    g = torch.exp(-(r ** 2) / (2 * SIGMA ** 2))
    g = g / g.sum()
    return g


def _filter(v: torch.Tensor, g: torch.Tensor, pad: bool) -> torch.Tensor:
    """Separable Gaussian blur per channel; ``pad`` = symmetric border extension ('same' size)."""
    c = v.shape[1]
    if pad:
        p = WIN // 2
        v = _symmetric_pad(v, p)
    v = F.conv2d(v, g.view(1, 1, 1, WIN).expand(c, 1, 1, WIN), groups=c)
    return F.conv2d(v, g.view(1, 1, WIN, 1).expand(c, 1, WIN, 1), groups=c)


def _symmetric_pad(v: torch.Tensor, p: int) -> torch.Tensor:
    """Half-sample symmetric padding (d c b a | a b c d), valid for p <= size."""
    h, w = v.shape[-2:]
    iy = torch.cat([torch.arange(p - 1, -1, -1), torch.arange(h), torch.arange(h - 1, h - 1 - p, -1)])
    ix = torch.cat([torch.arange(p - 1, -1, -1), torch.arange(w), torch.arange(w - 1, w - 1 - p, -1)])
    return v[..., iy.to(v.device), :][..., ix.to(v.device)]


def _default_low(data_range: float, low: float | None) -> float:
    if low is not None:
        return float(low)
    return -1.0 if data_range == 2.0 else 0.0


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0,
             full: bool = False, low: float | None = None) -> torch.Tensor:
    """SSIM map ``(N, C, H', W')``: valid region ``H' = H - 10`` or, with ``full``, ``H' = H``.

    ``low`` is the lower end of the value range (see the module doc for the default).
    """
    x, y = _check_pair(x, y)
    shift = _default_low(data_range, low)
    if shift:
        x, y = x - shift, y - shift
    if min(x.shape[-2:]) < WIN:
        raise ValueError(f"SSIM needs images of at least {WIN}x{WIN}, got {tuple(x.shape[-2:])}")
    g = _gaussian_window(x.device)
    mx, my = _filter(x, g, full), _filter(y, g, full)
    sxx = _filter(x * x, g, full) - mx * mx
    syy = _filter(y * y, g, full) - my * my
    sxy = _filter(x * y, g, full) - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, mask=None,
         low: float | None = None) -> torch.Tensor:
    """Per-image SSIM ``(N,)``: mean of the map over the valid region, or over masked pixels."""
    if mask is None:
        return ssim_map(x, y, data_range, low=low).flatten(1).mean(1)
    return _masked_mean(ssim_map(x, y, data_range, full=True, low=low), mask)


PSNR_CAP = 100.0  # dB, for an image reproduced exactly (zero error)


def restoration_scores(restored: torch.Tensor, original: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Mean PSNR/SSIM (hole and whole) and hole L1 of uint8 (N, C, H, W) results vs the originals.

    Per-image values (data range 255; PSNR capped at :data:`PSNR_CAP` so that an
    exactly reproduced image does not make the mean infinite), averaged over
    images. L1 is in [0, 1] units. ``masks`` (N, 1, H, W) are 1 in the holes.
    """
    x, y = restored.double(), original.double()

    def mean_psnr(mask=None) -> float:
        return psnr(x, y, data_range=255.0, mask=mask).clamp_max(PSNR_CAP).mean().item()

    return {
        "psnr_hole": mean_psnr(masks),
        "ssim_hole": ssim(x, y, data_range=255.0, mask=masks).mean().item(),
        "psnr": mean_psnr(),
        "ssim": ssim(x, y, data_range=255.0).mean().item(),
        "l1_hole": (l1(x, y, mask=masks) / 255.0).mean().item(),
    }
