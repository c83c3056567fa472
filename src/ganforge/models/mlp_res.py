"""The residual MLP GAN (``arch: mlp-res``): dense residual blocks ``y = H(x) + x``.

The MLP GAN of Goodfellow et al. (2014) with its hidden layers made residual
(pre-activation blocks, He et al. 2016): G uses batch norm, D layer norm and
optional dropout; ``model.g_layers`` / ``d_layers`` count blocks of
``g_width`` / ``d_width`` units. Linear layers are Xavier-initialised as in
:mod:`ganforge.models.resnet`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.models.families import register_model
from ganforge.models.layers import LabelEmbedding, check_labels
from ganforge.models.mlp import dense_pair
from ganforge.models.resnet import linear


class DenseResBlock(nn.Module):
    """(N, F) -> (N, F): ``x + fc2(act(norm2(fc1(act(norm1(x))))))`` (pre-activation, He et al. 2016)."""

    def __init__(self, width: int, norm: str = "batch", spectral_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        gain = nn.init.calculate_gain("leaky_relu", 0.2)
        self.norm1, self.norm2 = _norm(norm, width), _norm(norm, width)
        self.fc1 = linear(width, width, gain, spectral_norm)
        self.fc2 = linear(width, width, gain, spectral_norm)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def residual(self, x: Tensor) -> Tensor:
        h = self.fc1(F.leaky_relu(self.norm1(x), 0.2))
        return self.fc2(self.drop(F.leaky_relu(self.norm2(h), 0.2)))

    def shortcut(self, x: Tensor) -> Tensor:
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + x


def _norm(kind: str, width: int) -> nn.Module:
    # G uses batch norm; D uses layer norm, which normalises each sample on its
    # own and so keeps per-sample penalties (WGAN-GP, R1) meaningful (Gulrajani et al. 2017).
    return nn.BatchNorm1d(width) if kind == "batch" else nn.LayerNorm(width)


class ResMLPGenerator(nn.Module):
    """(N, z_dim) [+ labels (N,)] -> (N, C, H, W) in [-1, 1]; ``blocks`` residual blocks of ``width`` units."""

    def __init__(self, z_dim: int, image_shape: tuple[int, int, int], width: int = 256, blocks: int = 3,
                 num_classes: int = 0, spectral_norm: bool = False):
        super().__init__()
        self.z_dim, self.image_shape, self.num_classes = z_dim, tuple(image_shape), num_classes
        self.embed = LabelEmbedding(num_classes) if num_classes else None
        self.fc_in = linear(z_dim + num_classes, width, 1.0, spectral_norm)
        self.blocks = nn.Sequential(*(DenseResBlock(width, "batch", spectral_norm) for _ in range(blocks)))
        self.out_norm = nn.BatchNorm1d(width)
        self.fc_out = linear(width, math.prod(self.image_shape), 1.0, spectral_norm)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the noise on (for ``train.freeze_g``): the input layer, each residual
        block, then the output norm and layer."""
        return [[self.fc_in], *([b] for b in self.blocks), [self.out_norm, self.fc_out]]

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "ResMLPGenerator")
        if self.embed is not None:
            z = torch.cat([z, self.embed(y, z.dtype)], dim=1)
        h = F.leaky_relu(self.out_norm(self.blocks(self.fc_in(z))), 0.2)
        return torch.tanh(self.fc_out(h)).view(z.shape[0], *self.image_shape)


class ResMLPDiscriminator(nn.Module):
    """(N, C, H, W) [+ labels (N,)] -> (N,) logits (high = real). No sigmoid inside."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 256, blocks: int = 3,
                 num_classes: int = 0, spectral_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.embed = LabelEmbedding(num_classes) if num_classes else None
        self.fc_in = linear(math.prod(image_shape) + num_classes, width, 1.0, spectral_norm)
        self.blocks = nn.Sequential(*(DenseResBlock(width, "layer", spectral_norm, dropout) for _ in range(blocks)))
        self.out_norm = nn.LayerNorm(width)
        self.fc_out = linear(width, 1, 1.0, spectral_norm)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the image on (for ``train.freeze_d``): the input layer, each residual
        block, then the output norm and head."""
        return [[self.fc_in], *([b] for b in self.blocks), [self.out_norm, self.fc_out]]

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "ResMLPDiscriminator")
        h = x.flatten(1)
        if self.embed is not None:
            h = torch.cat([h, self.embed(y, h.dtype)], dim=1)
        h = F.leaky_relu(self.out_norm(self.blocks(self.fc_in(h))), 0.2)
        return self.fc_out(h).squeeze(1)


@register_model("mlp-res")
def build_mlp_res(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """Residual dense blocks: (ResMLPGenerator, ResMLPDiscriminator); g_layers/d_layers count blocks."""
    return dense_pair(cfg, ResMLPGenerator, ResMLPDiscriminator)
