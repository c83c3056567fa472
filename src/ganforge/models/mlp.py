"""The MLP GAN of Goodfellow et al. (2014): dense layers, LeakyReLU, tanh output.

Class-conditional variants concatenate a one-hot label to G's noise and to
D's flattened input (Mirza & Osindero 2014).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.models.layers import LabelEmbedding, check_labels, maybe_sn, split_stages
from ganforge.models.families import register_model


class MLPGenerator(nn.Module):
    """(N, z_dim) [+ labels (N,)] -> (N, C, H, W) in [-1, 1].

    Hidden widths grow as width, 2*width, ... over ``layers`` layers.
    """

    def __init__(self, z_dim: int, image_shape: tuple[int, int, int], width: int = 256, layers: int = 3,
                 num_classes: int = 0, spectral_norm: bool = False):
        super().__init__()
        self.z_dim, self.image_shape, self.num_classes = z_dim, tuple(image_shape), num_classes
        self.embed = LabelEmbedding(num_classes) if num_classes else None
        dims = [z_dim + num_classes] + [width * 2**i for i in range(layers)]
        body: list[nn.Module] = []
        for i in range(layers):
            body += [maybe_sn(nn.Linear(dims[i], dims[i + 1]), spectral_norm)]
            if i > 0:  # BN after the first layer keeps the deeper layers well scaled
                body += [nn.BatchNorm1d(dims[i + 1])]
            body += [nn.LeakyReLU(0.2)]
        c, h, w = self.image_shape
        body += [maybe_sn(nn.Linear(dims[-1], c * h * w), spectral_norm), nn.Tanh()]
        self.net = nn.Sequential(*body)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the noise on (for ``train.freeze_g``): one per linear layer with its norm."""
        return split_stages(self.net, nn.Linear)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "MLPGenerator")
        if self.embed is not None:
            z = torch.cat([z, self.embed(y, z.dtype)], dim=1)
        return self.net(z).view(z.shape[0], *self.image_shape)


class MLPDiscriminator(nn.Module):
    """(N, C, H, W) [+ labels (N,)] -> (N,) logits (high = real). No sigmoid inside."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 256, layers: int = 3,
                 num_classes: int = 0, spectral_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.embed = LabelEmbedding(num_classes) if num_classes else None
        c, h, w = image_shape
        dims = [c * h * w + num_classes] + [width * 2 ** (layers - 1 - i) for i in range(layers)]
        body: list[nn.Module] = []
        for i in range(layers):
            body += [maybe_sn(nn.Linear(dims[i], dims[i + 1]), spectral_norm), nn.LeakyReLU(0.2)]
            if dropout > 0:
                body += [nn.Dropout(dropout)]
        body += [maybe_sn(nn.Linear(dims[-1], 1), spectral_norm)]
        self.net = nn.Sequential(*body)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the image on (for ``train.freeze_d``): one per linear layer; the last is the head."""
        return split_stages(self.net, nn.Linear)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "MLPDiscriminator")
        h = x.flatten(1)
        if self.embed is not None:
            h = torch.cat([h, self.embed(y, h.dtype)], dim=1)
        return self.net(h).squeeze(1)


def dense_pair(cfg: RunConfig, G: type[nn.Module], D: type[nn.Module]) -> tuple[nn.Module, nn.Module]:
    """``(G, D)`` of a dense family from the config (widths, layer counts, classes, SN, dropout)."""
    m, shape = cfg.model, (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    g = G(m.z_dim, shape, m.g_width, m.g_layers, m.num_classes, m.spectral_norm_g)
    return g, D(shape, m.d_width, m.d_layers, m.num_classes, m.spectral_norm_d, m.dropout)


@register_model("mlp")
def build_mlp(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """Dense layers (Goodfellow et al. 2014): (MLPGenerator, MLPDiscriminator)."""
    return dense_pair(cfg, MLPGenerator, MLPDiscriminator)
