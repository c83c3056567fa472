"""The SNGAN/BigGAN-style residual GAN (``arch: resnet``); the residual MLP is :mod:`ganforge.models.mlp_res`.

Every block computes ``y = H(x) + shortcut(x)`` (He et al. 2016). The layouts
follow the ResNets of Miyato et al. (2018, "Spectral Normalization for GANs")
and Miyato & Koyama (2018, projection discriminator):

Generator, ``image_size = base * 2**n`` (see :func:`upsampling_plan`)::

    z -> Linear -> (c0, base, base)
      -> n x GBlock: [CBN -> ReLU -> up2 -> conv3 -> CBN -> ReLU -> conv3] + [conv1 if channels change -> up2]
      -> BN -> ReLU -> conv3 -> tanh

Block i outputs ``g_width * 2**(n-1-i)`` channels (capped at 16x), so the last
block has ``g_width`` and the first input ``c0 = g_width * 2**(n-1)``. At 128 px
with width 64 that is SNGAN's 1024-1024-512-256-128-64 generator. CBN is
:class:`ConditionalBatchNorm2d` (per-class gain and bias) when
``num_classes > 0``, plain BN otherwise; the final BN is unconditional as in SNGAN.

Discriminator::

    x -> first block: [conv3 -> ReLU -> conv3 -> avgpool] + [avgpool -> conv1]
      -> n-1 x DBlock: [ReLU -> conv3 -> ReLU -> conv3 -> avgpool] + [avgpool -> conv1]
      -> 1 x DBlock without downsampling (identity shortcut)
      -> ReLU -> sum over H, W -> Linear -> logit  (+ <embed(y), h> when conditional)

Channels double after each halving from ``d_width`` (capped at 16x), ending at
``base x base``: 28 px -> 7x7, 32/64/128 px -> 4x4. At 128 px with width 64
this is SNGAN's 64-128-256-512-1024-1024 discriminator. At 32 px SNGAN's
CIFAR model instead stays at one width and stops at 8x8 with two
non-downsampling blocks; one rule for every resolution was preferred here.
The first block has no leading ReLU (its input is the image), which is why
SNGAN calls it "optimized".

Shortcut order: a 1x1 convolution commutes with nearest upsampling and with
average pooling (all are linear and act per pixel / per channel), so the
shortcuts apply the 1x1 convolution at the lower resolution, which is the same
function at a quarter of the cost.

Initialisation (as in the SNGAN reference implementation): Xavier-uniform with
gain sqrt(2) for convolutions inside residual branches (each follows a ReLU),
gain 1 for shortcuts, the input projection, the output convolution and the
linear/projection heads; biases zero. Weights are initialised before spectral
normalisation wraps them, since the wrapper estimates sigma at registration.

Block shape (``model.block``): ``basic`` is the two 3x3 convolutions above;
``bottleneck`` is ResNeXt's 1x1 -> grouped 3x3 -> 1x1 with ``model.expansion`` x
cout channels inside in groups of ``model.group_channels`` (the block of R3GAN,
here with the rest of this network kept: norms, ReLU, pooling, initialisation).

Normalisation in G (``model.g_norm``): ``batch`` is SNGAN's (the CBNs and the
output BN above); ``none`` removes every norm of G, as R3GAN does, and starts each
GBlock as its shortcut (the residual branch's last convolution zero, as in Fixup and
R3GAN; not with ``model.spectral_norm_g``), so that the unnormalised sum does not grow
with depth at initialisation.
Without norms G has no place for classes, so ``none`` is unconditional only (the
``r3gan`` family is the normalisation-free conditional network).

Spectral normalisation (``model.spectral_norm_d`` / ``model.spectral_norm_g``)
wraps every convolution, linear layer and the projection embedding of that
network; batch norm is never wrapped.

Self-attention (``model.attention``, SAGAN / BigGAN): one
:class:`~ganforge.models.attention.SelfAttention2d` after the GBlock of G and
after the DBlock of D whose output has that resolution, which must be one both
networks have (:func:`attention_resolutions`: 14 at 28 px, 8 or 16 at 32 px).
It starts as the identity, counts as part of the block it follows for
``train.freeze_g`` / ``freeze_d``, and its weights are named ``attention.*``, so
the other names are those of a model without it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.errors import ConfigError
from ganforge.models.attention import SelfAttention2d
from ganforge.models.conditional import ConditionalBatchNorm2d, ProjectionHead
from ganforge.models.layers import check_labels, grouped_width, maybe_sn, upsampling_plan
from ganforge.models.families import register_model

RELU_GAIN = math.sqrt(2.0)
MAX_MULT = 16  # widest layer = 16 x width (SNGAN / BigGAN at 128 px)


def _init(module: nn.Module, gain: float, sn: bool) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return maybe_sn(module, sn)


def conv(cin: int, cout: int, k: int, gain: float, sn: bool) -> nn.Module:
    """A same-padding ``k x k`` convolution, Xavier-initialised, optionally spectrally normalised."""
    return _init(nn.Conv2d(cin, cout, k, padding=k // 2), gain, sn)


def linear(fin: int, fout: int, gain: float, sn: bool) -> nn.Module:
    """A linear layer, Xavier-initialised, optionally spectrally normalised."""
    return _init(nn.Linear(fin, fout), gain, sn)


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def attention_resolutions(image_size: int) -> tuple[int, ...]:
    """Feature-map sizes after a block of both G and D: the valid non-zero ``model.attention`` values.

    With ``image_size = base * 2**n``, G's blocks output ``2 base, ..., 2**n base``
    and D's ``2**(n-1) base, ..., base`` (then ``base`` again), so both have
    ``base * 2**k`` for ``0 < k < n``: 28 -> (14,), 32 -> (8, 16), 64 -> (8, 16, 32).
    """
    base, n = upsampling_plan(image_size)
    return tuple(base * 2 ** k for k in range(1, n))


def _attention_after(sizes: list[int], attention: int, image_size: int) -> int | None:
    """Index of the block (output sizes ``sizes``) followed by attention; None for ``attention=0``."""
    if not attention:
        return None
    valid = attention_resolutions(image_size)
    if attention not in valid:
        choices = f"0 (none) or {' or '.join(map(str, valid))}" if valid else "0 (none: no size fits)"
        raise ConfigError("model.attention", f"{attention} is not a feature-map size of both G and D at "
                          f"data.image_size={image_size}; choose {choices}")
    return sizes.index(attention)


def grouped_conv3(hidden: int, groups: int, sn: bool) -> nn.Module:
    """The grouped 3x3 convolution in the middle of a bottleneck branch (``hidden`` channels)."""
    layer = nn.Conv2d(hidden, hidden, 3, padding=1, groups=groups)
    return _init(layer, RELU_GAIN, sn)


def _shape(bottleneck: tuple[int, int] | None, cout: int) -> tuple[int, int] | None:
    """A block's ``(hidden, groups)`` from the networks' ``(expansion, group_channels)``; None: basic."""
    return None if bottleneck is None else grouped_width(cout, *bottleneck)


class _NoNorm(nn.Module):
    """Stands where a (conditional) BatchNorm would, for ``model.g_norm=none``: x -> x."""

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return x


def _g_norm(channels: int, num_classes: int, norm: bool) -> nn.Module:
    return ConditionalBatchNorm2d(channels, num_classes) if norm else _NoNorm()


def _last(cin: int, cout: int, k: int, sn: bool, norm: bool) -> nn.Module:
    """The residual branch's last convolution: zero without norms, so the block starts as its
    shortcut; Xavier with spectral norm, which a zero matrix would not have."""
    layer = conv(cin, cout, k, RELU_GAIN, False)
    if not norm and not sn:
        nn.init.zeros_(layer.weight)
    return maybe_sn(layer, sn)


class GBlock(nn.Module):
    """Upsampling generator block: (N, cin, H, W) [+ labels (N,)] -> (N, cout, 2H, 2W).

    ``bottleneck=(hidden, groups)`` swaps the two 3x3 convolutions of the branch for
    1x1 (cin -> hidden) -> grouped 3x3 -> 1x1 (hidden -> cout), each after CBN and
    ReLU (``model.block=bottleneck``); the first 1x1 runs before the upsampling, with
    which it commutes.
    """

    def __init__(self, cin: int, cout: int, num_classes: int = 0, spectral_norm: bool = False,
                 bottleneck: tuple[int, int] | None = None, norm: bool = True):
        super().__init__()
        self.bn1 = _g_norm(cin, num_classes, norm)
        if bottleneck is None:
            self.conv1 = conv(cin, cout, 3, RELU_GAIN, spectral_norm)
            self.bn2 = _g_norm(cout, num_classes, norm)
            self.conv2 = _last(cout, cout, 3, spectral_norm, norm)
            self.conv3 = None
        else:
            hidden, groups = bottleneck
            self.conv1 = conv(cin, hidden, 1, RELU_GAIN, spectral_norm)
            self.bn2 = _g_norm(hidden, num_classes, norm)
            self.conv2 = grouped_conv3(hidden, groups, spectral_norm)
            self.bn3 = _g_norm(hidden, num_classes, norm)
            self.conv3 = _last(hidden, cout, 1, spectral_norm, norm)
        self.skip = conv(cin, cout, 1, 1.0, spectral_norm) if cin != cout else None

    def residual(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = F.relu(self.bn1(x, y))
        if self.conv3 is None:
            h = self.conv1(_up(h))
            return self.conv2(F.relu(self.bn2(h, y)))
        h = self.conv2(F.relu(self.bn2(_up(self.conv1(h)), y)))
        return self.conv3(F.relu(self.bn3(h, y)))

    def shortcut(self, x: Tensor) -> Tensor:
        return _up(self.skip(x) if self.skip is not None else x)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.residual(x, y) + self.shortcut(x)


class DBlock(nn.Module):
    """Discriminator block: (N, cin, H, W) -> (N, cout, H/2, W/2), or same size without ``downsample``.

    ``first=True`` is SNGAN's optimized first block: no ReLU before the first
    convolution, and the shortcut always has a 1x1 convolution. ``bottleneck=(hidden,
    groups)``: 1x1 (cin -> hidden) -> grouped 3x3 -> 1x1 (hidden -> cout), the pooling
    before the last 1x1, with which it commutes.
    """

    def __init__(self, cin: int, cout: int, downsample: bool = True, spectral_norm: bool = False,
                 first: bool = False, bottleneck: tuple[int, int] | None = None):
        super().__init__()
        self.downsample, self.first = downsample, first
        if bottleneck is None:
            self.conv1 = conv(cin, cout, 3, RELU_GAIN, spectral_norm)
            self.conv2 = conv(cout, cout, 3, RELU_GAIN, spectral_norm)
            self.conv3 = None
        else:
            hidden, groups = bottleneck
            self.conv1 = conv(cin, hidden, 1, RELU_GAIN, spectral_norm)
            self.conv2 = grouped_conv3(hidden, groups, spectral_norm)
            self.conv3 = conv(hidden, cout, 1, RELU_GAIN, spectral_norm)
        learnable = first or downsample or cin != cout
        self.skip = conv(cin, cout, 1, 1.0, spectral_norm) if learnable else None

    def residual(self, x: Tensor) -> Tensor:
        # Not in place: x is still needed by the shortcut.
        h = self.conv1(x if self.first else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.conv3 is not None:
            h = F.relu(h)
        h = F.avg_pool2d(h, 2) if self.downsample else h
        return h if self.conv3 is None else self.conv3(h)

    def shortcut(self, x: Tensor) -> Tensor:
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        return self.skip(x) if self.skip is not None else x

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


class ResNetGenerator(nn.Module):
    """(N, z_dim) [+ labels (N,)] -> (N, C, H, W) in [-1, 1]."""

    def __init__(self, z_dim: int, image_size: int, channels: int, width: int = 64,
                 num_classes: int = 0, spectral_norm: bool = False, attention: int = 0,
                 bottleneck: tuple[int, int] | None = None,  # (expansion, group_channels); None: basic
                 norm: bool = True):  # False: model.g_norm=none
        super().__init__()
        if num_classes and not norm:
            raise ConfigError("model.g_norm", "none takes G's class-conditional norms away, the only place its "
                              "classes enter; use batch with model.num_classes, or model.arch=r3gan")
        self.z_dim, self.num_classes = z_dim, num_classes
        base, n_up = upsampling_plan(image_size)
        outs = [width * min(2 ** (n_up - 1 - i), MAX_MULT) for i in range(n_up)]
        self.base, self.c0 = base, outs[0]
        self.project = linear(z_dim, self.c0 * base * base, 1.0, spectral_norm)
        self.blocks = nn.ModuleList(GBlock(cin, cout, num_classes, spectral_norm, _shape(bottleneck, cout), norm)
                                    for cin, cout in zip([self.c0] + outs[:-1], outs))
        self.attention_after = _attention_after([base * 2 ** (i + 1) for i in range(n_up)], attention, image_size)
        self.attention = (SelfAttention2d(outs[self.attention_after], spectral_norm)
                          if self.attention_after is not None else None)
        self.out_bn = nn.BatchNorm2d(outs[-1]) if norm else nn.Identity()
        self.out_conv = conv(outs[-1], channels, 3, 1.0, spectral_norm)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the noise on (for ``train.freeze_g``): the projection, each GBlock
        (with its class-conditional norms, and the attention that follows it), then the
        output norm and convolution."""
        blocks = [[b, self.attention] if i == self.attention_after else [b] for i, b in enumerate(self.blocks)]
        return [[self.project], *blocks, [self.out_bn, self.out_conv]]

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "ResNetGenerator")
        y = y if self.num_classes else None
        h = self.project(z).view(z.shape[0], self.c0, self.base, self.base)
        for i, block in enumerate(self.blocks):
            h = block(h, y)
            if i == self.attention_after:
                h = self.attention(h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class ResNetDiscriminator(nn.Module):
    """(N, C, H, W) [+ labels (N,)] -> (N,) logits (high = real). No sigmoid inside."""

    def __init__(self, image_size: int, channels: int, width: int = 64, num_classes: int = 0,
                 spectral_norm: bool = False, attention: int = 0,
                 bottleneck: tuple[int, int] | None = None):  # (expansion, group_channels); None: basic
        super().__init__()
        self.num_classes = num_classes
        base, n_down = upsampling_plan(image_size)
        outs = [width * min(2 ** i, MAX_MULT) for i in range(n_down)]
        blocks = [DBlock(channels, outs[0], True, spectral_norm, True, _shape(bottleneck, outs[0]))]
        blocks += [DBlock(cin, cout, True, spectral_norm, bottleneck=_shape(bottleneck, cout))
                   for cin, cout in zip(outs[:-1], outs[1:])]
        blocks.append(DBlock(outs[-1], outs[-1], False, spectral_norm, bottleneck=_shape(bottleneck, outs[-1])))
        self.blocks = nn.Sequential(*blocks)
        sizes = [base * 2 ** (n_down - 1 - i) for i in range(n_down)] + [base]
        self.attention_after = _attention_after(sizes, attention, image_size)
        self.attention = (SelfAttention2d(outs[self.attention_after], spectral_norm)
                          if self.attention_after is not None else None)
        self.linear = linear(outs[-1], 1, 1.0, spectral_norm)
        self.projection = ProjectionHead(outs[-1], num_classes, spectral_norm) if num_classes else None

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the image on (for ``train.freeze_d``): each DBlock (with the attention
        that follows it), then the heads (linear and, when conditional, the projection)."""
        blocks = [[b, self.attention] if i == self.attention_after else [b] for i, b in enumerate(self.blocks)]
        heads = [self.linear] + ([self.projection] if self.projection is not None else [])
        return [*blocks, heads]

    def features(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, F): ReLU then global sum pooling (SNGAN), the input of both heads."""
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.attention_after:
                h = self.attention(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "ResNetDiscriminator")
        h = self.features(x)
        out = self.linear(h).squeeze(1)
        if self.projection is not None:
            out = out + self.projection(h, y)
        return out


# --------------------------------------------------------------- registration

@register_model("resnet")
def build_resnet(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """Residual convolutional blocks (SNGAN/BigGAN style): (ResNetGenerator, ResNetDiscriminator)."""
    m, size, ch = cfg.model, cfg.data.image_size, cfg.data.channels
    shape = (m.expansion, m.group_channels) if m.block == "bottleneck" else None
    g = ResNetGenerator(m.z_dim, size, ch, m.g_width, m.num_classes, m.spectral_norm_g, m.attention, shape,
                        norm=m.g_norm == "batch")
    d = ResNetDiscriminator(size, ch, m.d_width, m.num_classes, m.spectral_norm_d, m.attention, shape)
    return g, d
