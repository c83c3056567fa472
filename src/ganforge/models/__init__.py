"""Model families, the factory that builds them from a config, and saved generators.

Every generator of a ``"noise"`` family maps ``(z (N, z_dim), y (N,) | None) -> (N, C, H, W)``
in [-1, 1]; every discriminator maps ``(x (N, C, H, W), y | None) -> (N,)`` logits, high for
real. The ``"image+mask"`` family (inpainting) is described in :mod:`ganforge.models.families`.

A family is one module whose builder ``cfg -> (G, D)`` is decorated with
:func:`register_model`; the built-in ones are imported below, so importing this
package registers them. :func:`build_models` builds any registered family and
gives both networks ``.config``; :func:`save_pretrained` / :func:`from_pretrained`
write and read a generator as one folder. The trainer only uses this package.
"""

from __future__ import annotations

# The built-in families register themselves when imported (registration order = listing order).
from ganforge.models import mlp, dcgan, resnet, mlp_res, encoder_decoder, r3gan  # noqa: F401
from ganforge.models.factory import build_models
from ganforge.models.pretrained import from_pretrained, save_pretrained
from ganforge.models.families import (ModelFamily, get_family, model_names, register_model,
                                      unregister_model)

__all__ = ["ModelFamily", "build_models", "from_pretrained", "get_family", "model_names", "register_model",
           "save_pretrained", "unregister_model"]
