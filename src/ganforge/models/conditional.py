"""Class conditioning by composition: conditional batch norm for G, a projection head for D.

* :class:`ConditionalBatchNorm2d` (de Vries et al. 2017; Dumoulin et al. 2017; used in the
  generators of Miyato & Koyama 2018 and BigGAN): batch normalisation without its own
  affine transform, followed by a per-class scale and shift looked up from class tables
  (:func:`~ganforge.models.layers.lookup_rows`, which keeps a training step CUDA-graph-capturable).
* :class:`ProjectionHead` (Miyato & Koyama, "cGANs with Projection Discriminator", 2018):
  the class-dependent part of a discriminator's logit, ``<embed(y), phi(x)>``, added to
  the unconditional ``psi(phi(x))``.

Both take labels ``(N,)`` int64; models decide whether to use them (see
:func:`ganforge.models.layers.check_labels`).
"""

from __future__ import annotations

from torch import Tensor, nn

from ganforge.models.layers import lookup_rows, maybe_sn


class ConditionalBatchNorm2d(nn.Module):
    """(N, C, H, W) [+ labels (N,)] -> (N, C, H, W): ``gamma[y] * BN(x) + beta[y]``.

    ``gamma`` starts at 1 and ``beta`` at 0 for every class, so at initialisation the
    layer is plain batch normalisation and the classes separate only as training
    moves their embeddings apart. With ``num_classes == 0`` this is an ordinary
    affine :class:`~torch.nn.BatchNorm2d` and ``y`` is ignored, which lets one block
    definition serve conditional and unconditional generators.
    """

    def __init__(self, num_features: int, num_classes: int = 0, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.num_classes = num_features, num_classes
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=num_classes == 0)
        if num_classes > 0:
            self.gamma = nn.Embedding(num_classes, num_features)
            self.beta = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.gamma.weight)
            nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.bn(x)
        if self.num_classes == 0:
            return h
        if y is None:
            raise ValueError("ConditionalBatchNorm2d is class-conditional: pass labels y of shape (N,)")
        gamma = lookup_rows(self.gamma.weight, y).to(h.dtype)[:, :, None, None]
        beta = lookup_rows(self.beta.weight, y).to(h.dtype)[:, :, None, None]
        return gamma * h + beta

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}"


class ProjectionHead(nn.Module):
    """Projection term of a class-conditional discriminator: (N, F) features, (N,) labels -> (N,).

    Returns ``sum_f embed(y)[f] * h[f]``, to be added to the unconditional logit. The
    embedding matrix (num_classes, num_features) is spectrally normalised when asked,
    as the discriminator's other layers are (Miyato & Koyama 2018 normalise it too).
    """

    def __init__(self, num_features: int, num_classes: int, spectral_norm: bool = False):
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"ProjectionHead needs num_classes > 0, got {num_classes}")
        self.num_classes = num_classes
        embed = nn.Embedding(num_classes, num_features)
        nn.init.xavier_uniform_(embed.weight)  # before SN wraps it: SN estimates sigma at registration
        self.embed = maybe_sn(embed, spectral_norm)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        return (lookup_rows(self.embed.weight, y).to(h.dtype) * h).sum(dim=1)

