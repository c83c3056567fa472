"""Residual blocks with an image-wide receptive field: a Fourier unit beside a dilated 3x3.

LaMa (Suvorov et al. 2022, "Resolution-robust Large Mask Inpainting with Fourier
Convolutions") fills large holes well because every block of its generator sees the
whole image: a *Fourier unit* takes the real 2-D FFT of a feature map, mixes channels
at every frequency with one 1x1 convolution (the same weights for every frequency, so
it applies at any resolution), and transforms back. One such unit makes each output
position a function of every input position, which dilated convolutions reach only
after many blocks.

:class:`GlobalBranch` is what a residual block of :mod:`ganforge.models.encoder_decoder`
adds to its first convolution with ``inpaint.blocks: fourier``:
``x + IN(conv3x3(ReLU(IN(dilated3x3(x) + global(x)))))``, where ``global`` is
``1x1 -> ReLU -> (g + FourierUnit(g)) -> 1x1`` at half the width, He-initialised so that it
starts stronger than the 3x3. The FFT runs in float32 with autocast off: CPU and CUDA FFTs take no
bfloat16, and the transform of a small bottleneck is cheap beside the convolutions.
ONNX has no FFT that the exporter maps ``rfft2`` to, so under ``torch.onnx.export`` the
same transforms are written as products with DFT matrices built from the map's size
(:func:`rfft2_by_matmul`, :func:`irfft2_by_matmul`): equal to the FFT's result to float
rounding, O(H^2 W + H W^2) per channel, for any H, W the exported graph is given.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _dft_angles(n_out: int, n_in: int, like: Tensor, full: int) -> Tensor:
    """``(n_out, n_in)`` angles ``2 pi k m / full`` for output index k and input index m."""
    k = torch.arange(n_out, device=like.device, dtype=torch.float32)
    m = torch.arange(n_in, device=like.device, dtype=torch.float32)
    # k * m reduced modulo the period first: exact in float32 (below 2**24), so large maps keep
    # the angles' precision instead of losing it to cos/sin of large arguments.
    return (2 * torch.pi / full) * torch.remainder(k[:, None] * m[None, :], full)


def rfft2_by_matmul(x: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.fft.rfft2(x, norm="ortho")`` of ``(N, C, H, W)`` as (real, imag), each ``(N, C, H, W // 2 + 1)``."""
    h, w = x.shape[-2], x.shape[-1]
    aw = _dft_angles(w // 2 + 1, w, x, w)  # rows: frequencies kept by the real transform
    ah = _dft_angles(h, h, x, h)
    # Along W: X = sum_m x_m e^{-i a}; along H the same on a complex input (cos - i sin).
    real, imag = x @ aw.cos().T, -(x @ aw.sin().T)
    ch, sh = ah.cos(), ah.sin()
    real, imag = ch @ real + sh @ imag, ch @ imag - sh @ real
    scale = (h * w) ** -0.5
    return real * scale, imag * scale


def irfft2_by_matmul(real: Tensor, imag: Tensor, size: tuple[int, int]) -> Tensor:
    """``torch.fft.irfft2(complex(real, imag), s=size, norm="ortho")`` for ``(N, C, H, W // 2 + 1)`` parts."""
    h, w = size
    ah = _dft_angles(h, h, real, h)
    ch, sh = ah.cos(), ah.sin()
    real, imag = ch @ real - sh @ imag, ch @ imag + sh @ real  # inverse along H (cos + i sin)
    aw = _dft_angles(w // 2 + 1, w, real, w)
    # A real signal's spectrum: every bin but DC (and Nyquist, for even W) stands for two conjugates.
    k = torch.arange(w // 2 + 1, device=real.device, dtype=torch.float32)
    weight = torch.where((k == 0) | (2 * k == w), torch.ones_like(k), 2 * torch.ones_like(k))[:, None]
    x = real @ (weight * aw.cos()) - imag @ (weight * aw.sin())
    return x * (h * w) ** -0.5


class FourierUnit(nn.Module):
    """``(N, C, H, W) -> (N, C, H, W)``: rFFT2, a 1x1 convolution with ReLU on (real, imag), inverse rFFT2.

    The transform is orthonormal (``norm="ortho"``), so feature energy is the same in
    both domains and the unit's scale does not depend on ``H x W``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        dtype, (h, w) = x.dtype, x.shape[-2:]
        exporting = torch.onnx.is_in_onnx_export()
        # (autocast has no "meta" device: the memory preflight runs G on meta tensors)
        with torch.autocast(device_type="cuda" if x.is_cuda else "cpu", enabled=False):
            if exporting:
                real, imag = rfft2_by_matmul(x.float())
            else:
                f = torch.fft.rfft2(x.float(), norm="ortho")  # (N, C, H, W // 2 + 1) complex
                real, imag = f.real, f.imag
            real, imag = self.act(self.mix(torch.cat([real, imag], dim=1))).chunk(2, dim=1)
            if exporting:
                y = irfft2_by_matmul(real, imag, (h, w))
            else:
                y = torch.fft.irfft2(torch.complex(real, imag), s=(h, w), norm="ortho")
        return y.to(dtype)


class GlobalBranch(nn.Module):
    """``(N, ch, H, W) -> (N, ch, H, W)``: ``1x1 -> ReLU -> (g + FourierUnit(g)) -> 1x1`` at half the width.

    Added to the first convolution of a residual block
    (:class:`~ganforge.models.encoder_decoder.DilatedResBlock` with ``fourier=True``).
    """

    def __init__(self, ch: int):
        super().__init__()
        half = max(ch // 2, 1)
        self.inp = nn.Sequential(nn.Conv2d(ch, half, 1), nn.ReLU(inplace=True))
        self.fourier = FourierUnit(half)
        self.out = nn.Conv2d(half, ch, 1)

    def reset_parameters(self) -> None:
        """He initialisation (zero biases): the branch starts 2-3 times as strong as the block's 3x3.

        With the generator's N(0, 0.02) for every convolution, three 1x1 convolutions in a
        row start the branch's output 17-27 times weaker than the dilated 3x3's it is added
        to (the 64-px photo preset's generator), and it stays the weaker part in training
        (BENCHMARKS.md).
        """
        for conv in (self.inp[0], self.fourier.mix):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.kaiming_normal_(self.out.weight, nonlinearity="linear")
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        g = self.inp(x)
        return self.out(g + self.fourier(g))
