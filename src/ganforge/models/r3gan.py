"""The modern residual GAN (``arch: r3gan``): R3GAN's normalisation-free ResNet (Huang et al. 2024).

"The GAN is dead; long live the GAN! A Modern GAN Baseline" (NeurIPS 2024) pairs
the relativistic loss with R1 + R2 (``loss.name: rpgan``, ``loss.gamma``) and a
plain, modern ResNet without normalisation or spectral norm. Written from the
paper's description; the layout, at ``image_size = base * 2**n``
(:func:`~ganforge.models.layers.upsampling_plan`: 28 -> 7 * 2**2, 32 -> 4 * 2**3,
64 -> 4 * 2**4)::

    G: [z, embed(y)] -> Linear -> (C0,) x learned basis (C0, base, base)
       -> stage 0: B blocks -> stage k = 1..n: transition [conv1 if channels change, up2] + B blocks
       -> conv1 -> image (no tanh: the output is linear, as in R3GAN; saving clamps it)
    D: image -> conv1 -> stage k = n..1: B blocks + transition [down2, conv1 if channels change]
       -> stage 0: B blocks -> depthwise base x base conv (valid) -> Linear -> logit
       (class-conditional: the Linear gives an embedding, projected on embed(y))

Block (``y = x + F(x)``, bottleneck inverted as in ConvNeXt / ResNeXt)::

    conv1 (C -> E C) -> lrelu -> grouped conv3 (E C, groups of model.group_channels) -> lrelu -> conv1 (E C -> C)

Why each piece (paper, Sec. 3-4): without normalisation the residual sum must not
grow with depth, so the convolutions use fix-up style initialisation (Zhang et al.
2019): He-normal with the leaky-ReLU gain, scaled by ``L ** (-1 / (2 m - 2))`` for L
blocks in the network and m = 3 convolutions per block, and each block's last
convolution is zero, so every block starts as the identity and the network as a
shallow one. Up- and down-sampling use the binomial [1, 2, 1] filter (bilinear
interpolation / a blur before striding; Zhang 2019, "Making CNNs shift-invariant
again", and StyleGAN2) instead of nearest upsampling and average pooling, which
alias. G starts from a learned constant basis modulated by z (the "generative
basis"); D ends with a depthwise convolution over the last feature map (the
"discriminative basis"), which keeps where things are, unlike a global sum.
Channels per stage: ``width * min(2 ** (n - k), 4)`` at stage k (k = 0: the lowest
resolution), e.g. width 64 at 32 px: 256, 256, 128, 64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.errors import ConfigError
from ganforge.models.layers import check_labels, grouped_width, lookup_rows, upsampling_plan
from ganforge.models.families import register_model

SLOPE = 0.2  # leaky ReLU
LRELU_GAIN = math.sqrt(2.0 / (1.0 + SLOPE ** 2))  # keeps activations' second moment (He et al. 2015)
MAX_MULT = 4
CONVS_PER_BLOCK = 3


def stage_widths(width: int, n: int) -> list[int]:
    """Channels of stages 0..n (lowest resolution first)."""
    return [width * min(2 ** (n - k), MAX_MULT) for k in range(n + 1)]


def _he(layer: nn.Module, gain: float) -> nn.Module:
    """Normal weights with std ``gain / sqrt(fan_in)``; zero bias. ``gain = 0``: a zero layer."""
    w = layer.weight
    fan_in = w[0].numel()  # (in / groups) * k * k for a convolution, in for a linear layer
    if gain == 0:
        nn.init.zeros_(w)
    else:
        nn.init.normal_(w, 0.0, gain / math.sqrt(fan_in))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _binomial(channels: int, scale: float) -> Tensor:
    """Depthwise [1, 2, 1] x [1, 2, 1] kernel, (C, 1, 3, 3), summing to ``scale``."""
    k = torch.tensor([1.0, 2.0, 1.0])
    k2 = torch.outer(k, k)
    return (k2 / k2.sum() * scale).expand(channels, 1, 3, 3).contiguous()


class LowPassResample(nn.Module):
    """(N, C, H, W) -> (N, C, 2H, 2W) (``up``) or (N, C, H/2, W/2): binomial-filtered resampling.

    Up: a stride-2 transposed depthwise convolution with the [1, 2, 1] filter (gain 4
    so a constant image stays constant), i.e. bilinear interpolation. Down: the filter,
    then every second pixel. The kernel is a buffer, not a parameter: the filter is fixed.
    """

    def __init__(self, channels: int, up: bool):
        super().__init__()
        self.up = up
        self.register_buffer("kernel", _binomial(channels, 4.0 if up else 1.0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel.to(x.dtype)
        if self.up:
            return F.conv_transpose2d(x, k, stride=2, padding=1, output_padding=1, groups=x.shape[1])
        return F.conv2d(x, k, stride=2, padding=1, groups=x.shape[1])


class ResidualBlock(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): ``x + conv1(lrelu(gconv3(lrelu(conv1(x)))))``; the identity at init."""

    def __init__(self, channels: int, expansion: int, group_channels: int, scale: float):
        super().__init__()
        hidden, groups = grouped_width(channels, expansion, group_channels)
        self.conv1 = _he(nn.Conv2d(channels, hidden, 1), LRELU_GAIN * scale)
        self.conv2 = _he(nn.Conv2d(hidden, hidden, 3, padding=1, groups=groups), LRELU_GAIN * scale)
        self.conv3 = _he(nn.Conv2d(hidden, channels, 1), 0.0)

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv1(x), SLOPE)
        h = F.leaky_relu(self.conv2(h), SLOPE)
        return x + self.conv3(h)


class Transition(nn.Module):
    """Between stages: (N, Cin, H, W) -> (N, Cout, 2H, 2W) (up) or (N, Cout, H/2, W/2).

    The 1x1 convolution runs at the lower resolution (it commutes with the resampling).
    """

    def __init__(self, cin: int, cout: int, up: bool):
        super().__init__()
        self.up = up
        self.proj = _he(nn.Conv2d(cin, cout, 1), 1.0) if cin != cout else nn.Identity()
        self.resample = LowPassResample(cout if up else cin, up)

    def forward(self, x: Tensor) -> Tensor:
        return self.resample(self.proj(x)) if self.up else self.proj(self.resample(x))


def _stage(channels: int, cfg: RunConfig, scale: float) -> nn.Sequential:
    m = cfg.model
    return nn.Sequential(*(ResidualBlock(channels, m.expansion, m.group_channels, scale)
                           for _ in range(m.blocks_per_stage)))


def _block_scale(n_stages: int, blocks_per_stage: int) -> float:
    """Fix-up scaling ``L ** (-1 / (2 m - 2))`` of a block's first convolutions (L blocks, m convs each)."""
    return (n_stages * blocks_per_stage) ** (-1.0 / (2 * CONVS_PER_BLOCK - 2))


def _layout(cfg: RunConfig, width: int) -> tuple[int, list[int], float]:
    """``(base, widths from the lowest resolution up, block scale)`` of a network of base ``width``."""
    base, n = upsampling_plan(cfg.data.image_size, min_base=4)
    return base, stage_widths(width, n), _block_scale(n + 1, cfg.model.blocks_per_stage)


class R3Generator(nn.Module):
    """``(z (N, z_dim), y (N,) | None) -> (N, C, H, W)``, roughly in [-1, 1] (linear output)."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        m, d = cfg.model, cfg.data
        self.num_classes = m.num_classes
        base, widths, scale = _layout(cfg, m.g_width)
        # Classes: a learned embedding (one row per class) concatenated to z before the basis.
        self.embed = nn.Parameter(torch.randn(m.num_classes, m.z_dim)) if m.num_classes else None
        self.project = _he(nn.Linear(m.z_dim * (2 if m.num_classes else 1), widths[0], bias=False), 1.0)
        self.basis = nn.Parameter(torch.randn(widths[0], base, base))
        self.stages = nn.ModuleList([_stage(widths[0], cfg, scale)])
        self.transitions = nn.ModuleList()
        for cin, cout in zip(widths[:-1], widths[1:]):
            self.transitions.append(Transition(cin, cout, up=True))
            self.stages.append(_stage(cout, cfg, scale))
        self.to_image = _he(nn.Conv2d(widths[-1], d.channels, 1), 1.0)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Units for ``train.freeze_g``: the input basis with stage 0, then each transition with its stage."""
        return [[self.project, self.stages[0]]] + [[t, s] for t, s in zip(self.transitions, self.stages[1:])]

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "R3Generator")
        if self.embed is not None:
            z = torch.cat([z, lookup_rows(self.embed, y).to(z.dtype)], dim=1)
        x = self.basis * self.project(z)[:, :, None, None]  # (N, C0, base, base)
        x = self.stages[0](x)
        for transition, stage in zip(self.transitions, self.stages[1:]):
            x = stage(transition(x))
        return self.to_image(x)


class R3Discriminator(nn.Module):
    """``(x (N, C, H, W), y (N,) | None) -> (N,)`` logits, high for real."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        m, d = cfg.model, cfg.data
        self.num_classes = m.num_classes
        base, widths, scale = _layout(cfg, m.d_width)
        widths = widths[::-1]  # highest resolution first
        self.from_image = _he(nn.Conv2d(d.channels, widths[0], 1), 1.0)
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for cin, cout in zip(widths[:-1], widths[1:]):
            self.stages.append(_stage(cin, cfg, scale))
            self.transitions.append(Transition(cin, cout, up=False))
        self.stages.append(_stage(widths[-1], cfg, scale))
        c = widths[-1]
        self.basis = _he(nn.Conv2d(c, c, base, groups=c, bias=False), 1.0)  # depthwise, base x base -> 1 x 1
        # Conditional: the features map to an embedding whose inner product with the class's row is the logit.
        self.linear = _he(nn.Linear(c, c if m.num_classes else 1), 1.0)
        self.embed = nn.Parameter(torch.randn(m.num_classes, c)) if m.num_classes else None

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Units for ``train.freeze_d``, from the image: each stage with its transition, then the head."""
        units = [[self.from_image, self.stages[0], self.transitions[0]]]
        units += [[s, t] for s, t in zip(self.stages[1:-1], self.transitions[1:])]
        return units + [[self.stages[-1], self.basis, self.linear]]

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "R3Discriminator")
        h = self.from_image(x)
        for stage, transition in zip(self.stages[:-1], self.transitions):
            h = transition(stage(h))
        h = self.linear(self.basis(self.stages[-1](h)).flatten(1))
        if self.embed is None:
            return h.squeeze(1)
        # Projection (Miyato & Koyama 2018), scaled so the logit's size does not grow with the width.
        return (h * lookup_rows(self.embed, y).to(h.dtype)).sum(dim=1) / math.sqrt(h.shape[1])


@register_model("r3gan")
def build_r3gan(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """R3GAN's normalisation-free residual G and D (Huang et al. 2024), 28 to 64+ px."""
    if cfg.model.spectral_norm_d or cfg.model.spectral_norm_g:
        key = "model.spectral_norm_d" if cfg.model.spectral_norm_d else "model.spectral_norm_g"
        raise ConfigError(key, "the r3gan family is normalisation-free: its stability comes "
                          "from R1 + R2 (loss.gamma), not spectral norm")
    return R3Generator(cfg), R3Discriminator(cfg)
