"""Mode coverage on stacked data (``modes``): how many of the 1000 modes a generator reaches.

The StackedMNIST protocol (Metz et al. 2017; Srivastava et al. 2017, VEEGAN; Lin
et al. 2018, PacGAN; Huang et al. 2024, R3GAN) on ``stacked-fashion-mnist``
(:mod:`ganforge.data.stacked`): each channel of a generated ``(3, H, W)`` image is
classified by the Fashion-MNIST domain classifier
(:func:`~ganforge.metrics.classifier.get_domain_classifier`), the three classes
``a, b, c`` give the mode ``100 a + 10 b + c``, and over the generated images
(26,000 in the protocol: ``ganforge eval --n 26000``) it reports

* ``modes{tag}``: modes hit at least once, of 1000;
* ``modes_kl{tag}``: KL(generated mode histogram || uniform over the 1000), in nats.

The same two figures on the real reference images (``modes_real_{split}``,
``modes_kl_real_{split}``) say what a perfect generator would get with as many
samples and this classifier: 26,000 uniform draws leave a few modes empty and a
KL near 0.02 by chance alone, and classifier errors add to both.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ganforge.errors import ConfigError
from ganforge.metrics.catalog import ImagePair, MetricOptions, register_metric

CLASSES = 10
MODES = CLASSES ** 3


@functools.cache
def mode_classifier():
    """The Fashion-MNIST domain classifier (trained once and cached on disk; loaded once per process),
    on the GPU when there is one."""
    from ganforge.metrics.classifier import get_domain_classifier

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return get_domain_classifier("fashion-mnist", device=device)[0]


def stacked_modes(classifier, images: torch.Tensor) -> torch.Tensor:
    """Modes ``(N,)`` int64 in [0, 1000) of uint8 images ``(N, 3, H, W)``: one class per channel.

    ``classifier.predict(x (n, 1, H, W)) -> (features, logits (n, 10))``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError("metrics", f"modes needs stacked 3-channel images (stacked-fashion-mnist), "
                                     f"got images of shape {tuple(images.shape[1:])}")
    classes = [classifier.predict(images[:, c:c + 1].contiguous())[1].argmax(1) for c in range(3)]
    return 100 * classes[0] + 10 * classes[1] + classes[2]


def coverage(modes: torch.Tensor, n_modes: int = MODES) -> tuple[int, float]:
    """``(modes covered, KL(histogram || uniform))`` of mode ids ``(N,)``."""
    p = torch.bincount(modes.long().cpu(), minlength=n_modes).double()
    p = p / p.sum()
    nz = p[p > 0]
    return int((p > 0).sum()), float((nz * torch.log(nz * n_modes)).sum())


@register_metric("modes", needs=("images",), better="higher")
def modes(images: ImagePair, *, tag: str, split: str, options: MetricOptions) -> dict[str, Any]:
    """Modes covered (of 1000) and KL to uniform, for the generated and the real images."""
    clf = mode_classifier()
    if "modes_real" not in images.cache:  # the real images do not change between evaluations
        images.cache["modes_real"] = coverage(stacked_modes(clf, images.real))
    real_covered, real_kl = images.cache["modes_real"]
    fake_covered, fake_kl = coverage(stacked_modes(clf, images.fake))
    return {f"modes{tag}": fake_covered, f"modes_kl{tag}": fake_kl,
            f"modes_real_{split}": real_covered, f"modes_kl_real_{split}": real_kl}
