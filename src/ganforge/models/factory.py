"""Building ``(G, D)`` from a config: the registered family, after the memory pre-flight.

Both modules carry the config they were built from as ``.config`` (a copy of the
:class:`~ganforge.config.RunConfig`), so a generator can be saved as one
self-describing folder (:func:`ganforge.models.pretrained.save_pretrained`)
without its run directory.
"""

from __future__ import annotations

import copy

from torch import nn

from ganforge.config import RunConfig
from ganforge.models.preflight import check_fits
from ganforge.models.families import get_family


def build_models(cfg: RunConfig, training: bool = True) -> tuple[nn.Module, nn.Module]:
    """Build ``(generator, discriminator)`` for ``cfg.model.arch`` on the CPU (or the current default device).

    First checks that they fit in memory (:func:`ganforge.models.preflight.check_fits`):
    for training (``training=True``: optimizer state and activations at
    ``train.batch_size`` on ``train.device``) or just to load them for inference.
    ``G.config`` and ``D.config`` are one copy of ``cfg``, taken here so that later
    edits of the caller's config do not change what the models say they are.

    Raises:
        ConfigError: ``model.arch`` is not a registered family (the message lists
            them), or the models cannot fit (naming the key to reduce).
    """
    family = get_family(cfg.model.arch)
    check_fits(cfg, family, training=training)
    G, D = family.build(cfg)
    snapshot = copy.deepcopy(cfg)
    for module in (G, D):
        module.config = snapshot  # a plain attribute: not a parameter, not in the state_dict
    return G, D
