"""DCGAN (Radford et al. 2016): transposed-convolution generator, strided-convolution discriminator.

The resolution is a config field: ``image_size = base * 2**n`` (see
:func:`upsampling_plan`), G projects z to ``base x base`` and doubles the
resolution n times; D halves it n times. Channel widths halve towards the
image in G and double away from it in D, as in the paper.

Class-conditional variants concatenate a one-hot label to z (G) and a
one-hot label map to the image channels (D).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.models.layers import (LabelEmbedding, check_labels, init_dcgan_weights, maybe_sn, split_stages,
                                    upsampling_plan)
from ganforge.models.families import register_model


class DCGANGenerator(nn.Module):
    """(N, z_dim) [+ labels (N,)] -> (N, C, H, W) in [-1, 1]."""

    def __init__(self, z_dim: int, image_size: int, channels: int, width: int = 64,
                 num_classes: int = 0, spectral_norm: bool = False):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        base, n_up = upsampling_plan(image_size)
        self.base, self.c0 = base, width * 2 ** (n_up - 1)
        self.embed = LabelEmbedding(num_classes) if num_classes else None
        # A linear projection to base x base is the same map as DCGAN's first
        # transposed convolution on a 1x1 input, for any base.
        self.project = maybe_sn(nn.Linear(z_dim + num_classes, self.c0 * base * base, bias=False), spectral_norm)
        self.project_norm = nn.BatchNorm2d(self.c0)
        blocks: list[nn.Module] = []
        ch = self.c0
        for i in range(n_up):
            out = channels if i == n_up - 1 else ch // 2
            blocks.append(maybe_sn(nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=i == n_up - 1), spectral_norm))
            if i < n_up - 1:
                blocks += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            ch = out
        blocks.append(nn.Tanh())
        self.net = nn.Sequential(*blocks)
        init_dcgan_weights(self)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the noise on (for ``train.freeze_g``): the projection with its norm,
        then one per transposed convolution with its norm."""
        return [[self.project, self.project_norm], *split_stages(self.net, nn.ConvTranspose2d)]

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "DCGANGenerator")
        if self.embed is not None:
            z = torch.cat([z, self.embed(y, z.dtype)], dim=1)
        h = self.project(z).view(z.shape[0], self.c0, self.base, self.base)
        return self.net(torch.relu(self.project_norm(h)))


class DCGANDiscriminator(nn.Module):
    """(N, C, H, W) [+ labels (N,)] -> (N,) logits (high = real). No sigmoid inside."""

    def __init__(self, image_size: int, channels: int, width: int = 64, num_classes: int = 0,
                 spectral_norm: bool = False, batchnorm: bool = True):
        super().__init__()
        self.num_classes = num_classes
        base, n_down = upsampling_plan(image_size)
        self.embed = LabelEmbedding(num_classes) if num_classes else None
        layers: list[nn.Module] = []
        ch_in, ch = channels + num_classes, width
        for i in range(n_down):
            layers.append(maybe_sn(nn.Conv2d(ch_in, ch, 4, 2, 1, bias=not (batchnorm and i > 0)), spectral_norm))
            # No norm on the first layer (as in the paper); SN or GP replace BN when asked.
            if batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch_in, ch = ch, ch * 2
        self.features = nn.Sequential(*layers)
        self.head = maybe_sn(nn.Linear(ch_in * base * base, 1), spectral_norm)
        init_dcgan_weights(self)

    def transfer_blocks(self) -> list[list[nn.Module]]:
        """Blocks from the image on (for ``train.freeze_d``): one per strided convolution
        with its norm, then the linear head."""
        return [*split_stages(self.features, nn.Conv2d), [self.head]]

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_labels(y, self.num_classes, "DCGANDiscriminator")
        if self.embed is not None:
            onehot = self.embed(y, x.dtype)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            x = torch.cat([x, onehot], dim=1)
        return self.head(self.features(x).flatten(1)).squeeze(1)



@register_model("dcgan")
def build_dcgan(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    """Strided convolutions (Radford et al. 2016): (DCGANGenerator, DCGANDiscriminator)."""
    m, size, ch = cfg.model, cfg.data.image_size, cfg.data.channels
    g = DCGANGenerator(m.z_dim, size, ch, m.g_width, m.num_classes, m.spectral_norm_g)
    d = DCGANDiscriminator(size, ch, m.d_width, m.num_classes, m.spectral_norm_d, m.d_batchnorm)
    return g, d
