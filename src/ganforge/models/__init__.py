"""Model families and the factory that builds them from a config.

Every generator maps ``(z (N, z_dim), y (N,) | None) -> (N, C, H, W)`` in [-1, 1];
every discriminator maps ``(x (N, C, H, W), y | None) -> (N,)`` logits, high for real.
Families register a builder in :data:`ARCHS`; the trainer only uses this module.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ganforge.config import RunConfig
from ganforge.errors import ConfigError
from ganforge.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.models.mlp import MLPDiscriminator, MLPGenerator

Builder = Callable[[RunConfig], tuple[nn.Module, nn.Module]]


def _mlp(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    m, shape = cfg.model, (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    g = MLPGenerator(m.z_dim, shape, m.g_width, m.g_layers, m.num_classes, m.spectral_norm_g)
    d = MLPDiscriminator(shape, m.d_width, m.d_layers, m.num_classes, m.spectral_norm_d, m.dropout)
    return g, d


def _dcgan(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
    m, size, ch = cfg.model, cfg.data.image_size, cfg.data.channels
    g = DCGANGenerator(m.z_dim, size, ch, m.g_width, m.num_classes, m.spectral_norm_g)
    d = DCGANDiscriminator(size, ch, m.d_width, m.num_classes, m.spectral_norm_d, m.d_batchnorm)
    return g, d


ARCHS: dict[str, Builder] = {"mlp": _mlp, "dcgan": _dcgan}


def register(name: str, builder: Builder) -> None:
    """Add a model family (used by the residual and inpainting modules)."""
    ARCHS[name] = builder


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(cfg) -> (G, D)`` as ``model.arch: name``."""
    def decorate(builder: Builder) -> Builder:
        register(name, builder)
        return builder
    return decorate


def unregister_model(name: str) -> None:
    """Remove a registered family (plug-ins and tests); unknown names are ignored."""
    ARCHS.pop(name, None)


def model_names() -> tuple[str, ...]:
    _load_optional_families()
    return tuple(ARCHS)


def build_models(cfg: RunConfig, training: bool = True) -> tuple[nn.Module, nn.Module]:
    """Build ``(generator, discriminator)`` for ``cfg.model.arch`` on the CPU.

    First checks that they fit in memory (:func:`ganforge.models.preflight.check_fits`):
    for training (``training=True``: optimizer state and activations at
    ``train.batch_size`` on ``train.device``) or just to load them for inference.
    Raises ConfigError naming the key to reduce when they cannot.
    """
    from ganforge.models.preflight import check_fits

    _load_optional_families()
    if cfg.model.arch not in ARCHS:
        raise ConfigError("model.arch", f"unknown architecture {cfg.model.arch!r} (known: {', '.join(sorted(ARCHS))})")
    check_fits(cfg, ARCHS[cfg.model.arch], training=training)
    return ARCHS[cfg.model.arch](cfg)


def _load_optional_families() -> None:
    """Import the families that register themselves, so ARCHS is complete."""
    import importlib

    for mod in ("ganforge.models.resnet", "ganforge.models.encoder_decoder"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
