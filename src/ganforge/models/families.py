"""Model families, registered by name: ``model.arch`` -> builder and what the family declares.

A family is one decorated builder ``cfg -> (G, D)`` in the family's own module::

    @register_model("dcgan")
    def build_dcgan(cfg: RunConfig) -> tuple[nn.Module, nn.Module]:
        ...

:mod:`ganforge.models` imports the built-in families (``mlp``, ``dcgan``,
``resnet``, ``mlp-res``, ``inpaint``, ``r3gan``), so they are registered whenever the
package is imported; a family defined elsewhere (a plug-in, a test) registers
itself the same way and is then built, trained, saved and loaded like the
built-ins. Anything other modules need to know about a family is declared here,
not found by comparing names:

``inputs``
    what the generator takes: ``"noise"`` -- ``G(z (N, z_dim), y (N,) | None)``
    and ``D(x (N, C, H, W), y | None)`` -- or ``"image+mask"`` --
    ``G(image (N, C, H, W), mask (N, 1, H, W))`` and ``D(image, mask)``.
``example_inputs``
    ``(cfg, batch, device) -> (g_args, d_args)``: argument tuples for one
    forward pass of G and D (the memory pre-flight runs them on the ``meta``
    device); the default follows ``inputs``.

This module imports nothing from the rest of the package but the generic registry,
so :func:`ganforge.config.validate` can ask it which names exist (importing it runs
``ganforge.models``' own import of the built-in families first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ganforge.registry import Registry

INPUT_KINDS = ("noise", "image+mask")

# ``cfg`` is a ganforge.config.RunConfig; it is not imported here (config asks this module for names).
Builder = Callable[[Any], tuple[nn.Module, nn.Module]]
ExampleInputs = Callable[[Any, int, "torch.device | str"], tuple[tuple, tuple]]


def noise_inputs(cfg: Any, batch: int, device: torch.device | str = "cpu") -> tuple[tuple, tuple]:
    """``((z (B, z_dim), y (B,) | None), (x (B, C, H, W), y | None))``: zeros (or empty on ``meta``)."""
    c, s = cfg.data.channels, cfg.data.image_size
    y = torch.zeros(batch, dtype=torch.long, device=device) if cfg.model.num_classes else None
    z = torch.zeros(batch, cfg.model.z_dim, device=device)
    return (z, y), (torch.zeros(batch, c, s, s, device=device), y)


def image_mask_inputs(cfg: Any, batch: int, device: torch.device | str = "cpu") -> tuple[tuple, tuple]:
    """``((image (B, C, H, W), mask (B, 1, H, W)), (image, mask))``: zeros (or empty on ``meta``)."""
    c, s = cfg.data.channels, cfg.data.image_size
    image = torch.zeros(batch, c, s, s, device=device)
    mask = torch.zeros(batch, 1, s, s, device=device)
    return (image, mask), (image, mask)


_DEFAULT_INPUTS: dict[str, ExampleInputs] = {"noise": noise_inputs, "image+mask": image_mask_inputs}


@dataclass(frozen=True)
class ModelFamily:
    """One registered family: its name (``model.arch``), builder and declarations (see the module doc)."""

    name: str
    build: Builder
    inputs: str = "noise"
    example_inputs: ExampleInputs = noise_inputs
    description: str = ""

    def __call__(self, cfg: Any) -> tuple[nn.Module, nn.Module]:
        """``(G, D)`` for ``cfg``, freshly initialised, without the memory check of ``build_models``."""
        return self.build(cfg)


_REGISTRY: Registry[ModelFamily] = Registry("model family", "model.arch", lower=True)
unregister_model = _REGISTRY.remove
model_names = _REGISTRY.names


def register_model(name: str, inputs: str = "noise", example_inputs: ExampleInputs | None = None,
                   description: str = "") -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(cfg) -> (G, D)`` as family ``name`` (the value of ``model.arch``).

    Args:
        name: lower case, no spaces or commas, not yet registered (``ValueError`` otherwise:
            a programming error, not bad input).
        inputs: ``"noise"`` or ``"image+mask"`` (what G and D take; see the module doc).
        example_inputs: ``(cfg, batch, device) -> (g_args, d_args)``; default from ``inputs``.
        description: one line for listings and model cards (default: the builder's first doc line).

    Returns the builder unchanged, so it can still be called directly.
    """
    _REGISTRY.check_name(name)
    if inputs not in INPUT_KINDS:
        raise ValueError(f"model family {name!r}: inputs must be one of {', '.join(INPUT_KINDS)}, got {inputs!r}")

    def decorate(builder: Builder) -> Builder:
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY.add(name, ModelFamily(name, builder, inputs, example_inputs or _DEFAULT_INPUTS[inputs],
                                        description or (doc[0] if doc else "")))
        return builder

    return decorate


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``.

    Raises:
        ConfigError: naming ``model.arch`` and the registered names, when there is none.
    """
    return _REGISTRY.get_or_error(name)
