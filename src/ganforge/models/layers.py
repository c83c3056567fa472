"""Building blocks shared by the model families."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.errors import ConfigError


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap a Linear/Conv in spectral normalisation (Miyato et al. 2018) when ``enabled``."""
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def upsampling_plan(image_size: int, min_base: int = 3, max_base: int = 7) -> tuple[int, int]:
    """Split ``image_size`` into ``base * 2**n`` with base in [min_base, max_base], n >= 1.

    28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4), 48 -> (6, 3). Sizes that do not
    split (odd sizes, too small) raise ConfigError naming ``data.image_size``.
    """
    base, n = image_size, 0
    while base % 2 == 0 and base > max_base:
        base //= 2
        n += 1
    if n < 1 or not min_base <= base <= max_base:
        raise ConfigError("data.image_size", f"{image_size} is not supported by this model: it must be "
                          f"b * 2^n with b in [{min_base}, {max_base}] and n >= 1 (e.g. 28, 32, 48, 64, 128)")
    return base, n


class LabelEmbedding(nn.Module):
    """One-hot class labels for concatenation-style conditioning: (N,) int64 -> (N, num_classes)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, y: Tensor, dtype: torch.dtype) -> Tensor:
        return nn.functional.one_hot(y, self.num_classes).to(dtype)


def grouped_width(channels: int, expansion: int, group_channels: int) -> tuple[int, int]:
    """``(hidden, groups)`` of a bottleneck block's grouped 3x3 convolution (ResNeXt, R3GAN).

    ``hidden = channels * expansion`` split into groups of ``group_channels``; a
    ``group_channels`` that does not divide ``hidden`` raises ConfigError naming it.
    """
    hidden = channels * expansion
    if hidden % group_channels:
        raise ConfigError("model.group_channels", f"{group_channels} does not divide the {hidden} channels "
                          f"inside a block (model width x multiplier x model.expansion)")
    return hidden, hidden // group_channels


def lookup_rows(weight: Tensor, y: Tensor) -> Tensor:
    """``weight[y]``: rows (N, F) of a (K, F) class table for labels (N,).

    The same values as ``nn.Embedding`` (a gather), but its backward pass is an
    ``index_add`` into the table: ``nn.Embedding``'s CUDA backward sorts the labels
    and reads a segment count back to the host, which forbids capturing a training
    step of a conditional model as a CUDA graph. No matmul, so autocast leaves the
    rows in float32, and the cost is N x F whatever the number of classes.
    """
    return weight.index_select(0, y)


def check_labels(y: Tensor | None, num_classes: int, who: str) -> None:
    """Conditional models need labels; unconditional ones ignore them."""
    if num_classes > 0 and y is None:
        raise ValueError(f"{who} is class-conditional: pass labels y of shape (N,)")


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) for conv/linear weights, N(1, 0.02) for norm scales (Radford et al. 2016)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            parametrized = nn.utils.parametrize.is_parametrized(m, "weight")
            w = m.parametrizations.weight.original if parametrized else m.weight
            nn.init.normal_(w, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def split_stages(seq: nn.Sequential, starts: type | tuple[type, ...]) -> list[list[nn.Module]]:
    """Split a Sequential into groups of layers that each begin at a layer of type ``starts``.

    Used by the models' ``transfer_blocks()`` (the unit that ``train.freeze_d`` / ``freeze_g``
    count): e.g. ``[conv, bn, relu, conv, bn, relu]`` -> ``[[conv, bn, relu], [conv, bn, relu]]``.
    """
    groups: list[list[nn.Module]] = []
    for layer in seq:
        if isinstance(layer, starts) or not groups:
            groups.append([])
        groups[-1].append(layer)
    return groups
