"""Inpainting models: a residual encoder-decoder generator and a PatchGAN discriminator.

The generator follows the layout of Johnson et al. 2016's image transformation
network as used for inpainting by EdgeConnect (Nazeri et al. 2019): a 7x7 stem,
two stride-2 convolutions, residual blocks at 1/4 resolution, two transposed
convolutions back up (or, with ``inpaint.upsample: resize``, nearest 2x upsampling
each followed by a 3x3 convolution), a 7x7 output convolution and tanh. The residual blocks use
dilated 3x3 convolutions (dilation cycling 1, 2, 4) so that the bottleneck sees
the whole hole and its surroundings: with six blocks the receptive field at 1/4
resolution grows by 2 * (1 + 2 + 4) * 2 = 28 cells, i.e. more than 100 input
pixels, far beyond a 28x28 image and a good part of a 256x256 one. With
``inpaint.blocks: fourier`` each block also has a Fourier unit (LaMa's global branch,
:mod:`ganforge.models.fourier`), whose field is the whole image from the first block.

Normalisation is instance norm (as in those works): it has no running statistics,
so the network behaves the same in train and eval mode and at any resolution.

The discriminator is a PatchGAN (Isola et al. 2017) with spectral normalisation
(Miyato et al. 2018) on every convolution, as in SN-PatchGAN (Yu et al. 2019).
It also receives the mask as an extra channel: with the same mask given for the
real image, the mask itself carries no real/fake information, but it tells D
where to look.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.config_schema import CHOICES
from ganforge.errors import ConfigError
from ganforge.models.layers import maybe_sn, split_stages
from ganforge.models.families import register_model
from ganforge.models.fourier import GlobalBranch
from ganforge.models.prefill import PREFILLS, smooth_fill

DILATIONS = (1, 2, 4)
UPSAMPLES = CHOICES["inpaint.upsample"]  # one list for the config and the model
BLOCKS = CHOICES["inpaint.blocks"]


def pad_to_multiple(x: Tensor, multiple: int = 4) -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom/right of ``(N, C, H, W)`` to multiples of ``multiple``; returns ``(x, (H, W))``.

    Reflection when the image is large enough (pads of at most 3 px continue
    the local texture), replication otherwise.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class DilatedResBlock(nn.Module):
    """x + IN(conv3x3(ReLU(IN(conv3x3_dilated(x) [+ global(x)])))), width preserved.

    With ``fourier`` the first convolution's output also gets LaMa's global branch
    (:class:`~ganforge.models.fourier.GlobalBranch`), which sees the whole feature map.
    """

    def __init__(self, ch: int, dilation: int, fourier: bool = False):
        super().__init__()
        self.global_branch = GlobalBranch(ch) if fourier else None
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation),
            nn.InstanceNorm2d(ch, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.global_branch is None:
            return x + self.body(x)
        return x + self.body[1:](self.body[0](x) + self.global_branch(x))


def _conv_in_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2 if stride == 1 else 1),
            nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True)]


def _up_in_relu(cin: int, cout: int, upsample: str) -> list[nn.Module]:
    """2x upsampling to ``cout`` channels, instance norm, ReLU.

    ``transposed``: a 4x4 stride-2 transposed convolution, whose kernel overlaps unevenly
    and leaves a 2-pixel checkerboard in smooth regions (Odena et al. 2016, "Deconvolution
    and checkerboard artifacts"); ``resize``: nearest-neighbour 2x, then a 3x3 convolution,
    which cannot make that pattern (about 2.25x the decoder's multiply-adds).
    """
    if upsample == "resize":
        up = [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1)]
    else:
        up = [nn.ConvTranspose2d(cin, cout, 4, 2, 1)]
    return [*up, nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True)]


class InpaintGenerator(nn.Module):
    """``(image (N, C, H, W) in [-1, 1], mask (N, 1, H, W)) -> (N, C, H, W)`` completed image.

    The input to the network is ``concat(image * (1 - mask), mask)``: missing pixels
    are zero (mid-gray) and flagged by the mask channel. With ``prefill="smooth"`` the
    missing pixels are instead a smooth interpolation of the known ones
    (:func:`~ganforge.models.prefill.smooth_fill`) and the network predicts a
    correction to it: ``raw = tanh(atanh(fill) + head)``, the head's last convolution
    initialised to zero, so an untrained generator returns the smooth fill and
    training only has to learn what the fill misses. The output is composited,
    ``mask * prediction + (1 - mask) * image``, so known pixels come back exactly.
    Any ``H, W`` works: sizes that are not multiples of 4 are padded and cropped back.

    Args:
        channels: image channels C (1 or 3).
        width: channels of the stem; the bottleneck has ``4 * width``.
        res_blocks: residual blocks in the bottleneck.
        dilations: cycled over the residual blocks (default 1, 2, 4). Larger ones
            (e.g. 1, 2, 4, 8) widen the receptive field for large holes at the same cost
            per block; LaMa gets its image-wide field from Fourier convolutions instead.
        prefill: ``"none"`` (holes start mid-gray) or ``"smooth"`` (see above).
        upsample: the decoder's 2x steps, ``"transposed"`` (transposed convolutions) or
            ``"resize"`` (nearest 2x then a 3x3 convolution, free of checkerboard patterns).
        blocks: ``"dilated"`` residual blocks, or ``"fourier"``: each block also has LaMa's
            global branch, a Fourier unit whose output at every position depends on the whole
            feature map (:mod:`ganforge.models.fourier`).
    """

    def __init__(self, channels: int, width: int = 32, res_blocks: int = 6, dilations: tuple[int, ...] = DILATIONS,
                 prefill: str = "none", upsample: str = "transposed", blocks: str = "dilated"):
        super().__init__()
        if prefill not in PREFILLS:
            raise ConfigError("inpaint.prefill", f"must be one of {', '.join(PREFILLS)}, got {prefill!r}")
        self.channels = channels
        self.prefill = prefill
        w = width
        self.encoder = nn.Sequential(
            *_conv_in_relu(channels + 1, w, 7),
            *_conv_in_relu(w, 2 * w, 4, stride=2),
            *_conv_in_relu(2 * w, 4 * w, 4, stride=2),
        )
        dilations = tuple(dilations) or DILATIONS
        if any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 64 for d in dilations):
            raise ConfigError("inpaint.dilations", f"must be integers in [1, 64], got {list(dilations)}")
        self.dilations = dilations
        if blocks not in BLOCKS:
            raise ConfigError("inpaint.blocks", f"must be one of {', '.join(BLOCKS)}, got {blocks!r}")
        self.blocks = nn.Sequential(*[DilatedResBlock(4 * w, dilations[i % len(dilations)], blocks == "fourier")
                                      for i in range(res_blocks)])
        if upsample not in UPSAMPLES:
            raise ConfigError("inpaint.upsample", f"must be one of {', '.join(UPSAMPLES)}, got {upsample!r}")
        self.upsample = upsample
        self.decoder = nn.Sequential(
            *_up_in_relu(4 * w, 2 * w, upsample),
            *_up_in_relu(2 * w, w, upsample),
            nn.Conv2d(w, channels, 7, padding=3),
            *([] if prefill == "smooth" else [nn.Tanh()]),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        for block in self.blocks:  # after the loop above, which sets every convolution to N(0, 0.02)
            if block.global_branch is not None:
                block.global_branch.reset_parameters()
        if prefill == "smooth":
            nn.init.zeros_(self.decoder[-1].weight)  # start exactly at the smooth fill

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the input on (for ``train.freeze_g``): the three encoder convolutions
        (each with its norm), each residual block, then the three decoder convolutions."""
        return [*split_stages(self.encoder, nn.Conv2d), *([b] for b in self.blocks),
                *split_stages(self.decoder, (nn.ConvTranspose2d, nn.Conv2d))]

    def forward(self, image: Tensor, mask: Tensor, return_raw: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Completed image; with ``return_raw`` also the raw prediction ``(composited, raw)``."""
        if image.shape[1] != self.channels or mask.shape[1] != 1 or image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"expected image (N, {self.channels}, H, W) and mask (N, 1, H, W), "
                             f"got {tuple(image.shape)} and {tuple(mask.shape)}")
        mask = mask.to(image.dtype)
        start = smooth_fill(image, mask) if self.prefill == "smooth" else image * (1 - mask)
        x, (h, w) = pad_to_multiple(torch.cat([start, mask], dim=1))
        raw = self.decoder(self.blocks(self.encoder(x)))[..., :h, :w]
        if self.prefill == "smooth":
            # A correction in tanh's pre-image keeps raw in (-1, 1) and is exactly the fill at zero.
            raw = torch.tanh(torch.atanh(start.clamp(-0.999, 0.999)) + raw)
        out = mask * raw + (1 - mask) * image
        return (out, raw) if return_raw else out


class PatchDiscriminator(nn.Module):
    """``(image (N, C, H, W), mask (N, 1, H, W) | None) -> (N, P)`` patch logits, high = real.

    ``n_down`` stride-2 4x4 convolutions (width doubling, capped at 8x), then a
    stride-1 3x3 convolution and a 3x3 convolution to one logit per patch; all
    spectrally normalised, LeakyReLU(0.2), no normalisation layers.
    :meth:`forward` with ``return_features`` also returns the activations after
    each block, for a feature-matching loss.
    """

    def __init__(self, channels: int, width: int = 64, n_down: int = 2, use_mask: bool = True,
                 spectral_norm: bool = True):
        super().__init__()
        self.use_mask = use_mask
        cin = channels + (1 if use_mask else 0)
        blocks: list[nn.Module] = []
        ch = width
        for i in range(n_down):
            blocks.append(nn.Sequential(maybe_sn(nn.Conv2d(cin, ch, 4, 2, 1), spectral_norm),
                                        nn.LeakyReLU(0.2, inplace=True)))
            cin, ch = ch, min(ch * 2, 8 * width)
        blocks.append(nn.Sequential(maybe_sn(nn.Conv2d(cin, ch, 3, 1, 1), spectral_norm),
                                    nn.LeakyReLU(0.2, inplace=True)))
        self.blocks = nn.ModuleList(blocks)
        self.head = maybe_sn(nn.Conv2d(ch, 1, 3, 1, 1), spectral_norm)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the image on (for ``train.freeze_d``): each convolution stage, then the head."""
        return [*([b] for b in self.blocks), [self.head]]

    def forward(self, x: Tensor, mask: Tensor | None = None,
                return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        if self.use_mask:
            if mask is None:
                mask = torch.zeros_like(x[:, :1])
            x = torch.cat([x, mask.to(x.dtype)], dim=1)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        logits = self.head(x).flatten(1)
        return (logits, feats) if return_features else logits


def discriminator_depth(image_size: int) -> int:
    """Stride-2 layers of D: 2 below 48 px (28 -> 7x7 patches), 3 below 128, else 4."""
    return 2 if image_size < 48 else 3 if image_size < 128 else 4


@register_model("inpaint", inputs="image+mask",
                description="Encoder-decoder inpainting generator (dilated residual blocks) and a patch discriminator")
def build_inpaint(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """``(InpaintGenerator, PatchDiscriminator)`` from ``model.g_width``, ``model.d_width``, ``model.res_blocks``.

    D always uses spectral normalisation (``model.spectral_norm_d`` is not
    consulted: without it the PatchGAN is unstable at these loss weights).
    """
    m, ch = cfg.model, cfg.data.channels
    g = InpaintGenerator(ch, m.g_width, m.res_blocks, tuple(cfg.inpaint.dilations) or DILATIONS,
                         cfg.inpaint.prefill, cfg.inpaint.upsample, cfg.inpaint.blocks)
    d = PatchDiscriminator(ch, m.d_width, discriminator_depth(cfg.data.image_size))
    return g, d
