"""Inception discriminative scores, P-IDS and U-IDS (Zhao et al. 2021, CoModGAN).

A linear SVM is fitted to tell real from generated Inception pool3 features.

* **U-IDS** (unpaired): its misclassification rate, averaged over the two
  classes: 0.5 when the two sets cannot be told apart linearly, 0 when they
  always can.
* **P-IDS** (paired): the probability that a generated image scores as more real
  than *its own* real image, ``P(f(fake_i) > f(real_i))``. Only meaningful when
  the sets are paired by index, as in inpainting (``restored[i]`` is ``original[i]``
  with a hole filled): :class:`MetricOptions` ``paired`` says so.

Higher is better for both. CoModGAN fits and scores the SVM on the same 36k
images, where 2048-dimensional features cannot separate by chance alone. With
the few hundred images of an inpainting benchmark they always would (more
dimensions than points: U-IDS would read 0 for every method), so here the SVM
is cross-fitted instead: ``folds`` splits by pair, each fold scored by an SVM
fitted on the others, features standardised with the training folds' moments.
That is also why the values are lower than published ones at the same quality;
compare methods at the same ``n`` only.

The SVM minimises ``mean(max(0, 1 - y f(x))^2) + ||w||^2 / (2 C n)`` (the squared
hinge of LIBLINEAR's default, ``C = 1``), solved by L-BFGS in float64 on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ganforge.errors import ConfigError
from ganforge.metrics.catalog import FeaturePair, MetricOptions, register_metric

FOLDS = 5
SVM_C = 1.0
MIN_PAIRS = 2 * FOLDS  # every fold holds out at least two pairs


def _fit_linear_svm(x: torch.Tensor, y: torch.Tensor, c: float = SVM_C, steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights ``(D,)`` and bias of a squared-hinge linear SVM on ``x (N, D)``, labels ``y (N,)`` in {-1, +1}."""
    n, d = x.shape
    w = torch.zeros(d, dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")
    reg = 1.0 / (2.0 * c * n)

    def closure():
        opt.zero_grad()
        margin = (1 - y * (x @ w + b)).clamp_min(0)
        loss = margin.pow(2).mean() + reg * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def discriminative_scores(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, folds: int = FOLDS,
                          seed: int = 0, c: float = SVM_C) -> tuple[float, float]:
    """``(p_ids, u_ids)`` of paired features ``real (N, D)`` and ``fake (N, D)`` (row i of each is one pair).

    Cross-fitted over ``folds`` splits of the pairs, drawn from ``seed``.

    Raises:
        ConfigError: (naming ``n``) the sets differ in size or are too small to split.
    """
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    n = r.shape[0]
    if f.shape != r.shape:
        raise ConfigError("n", f"P-IDS/U-IDS need paired sets of one size, got {tuple(r.shape)} and {tuple(f.shape)}")
    if n < 2 * folds:
        raise ConfigError("n", f"P-IDS/U-IDS need at least {2 * folds} image pairs, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    paired_wins = real_wrong = fake_wrong = 0.0
    with torch.enable_grad():
        for held in order.chunk(folds):
            train = torch.ones(n, dtype=torch.bool)
            train[held] = False
            x = torch.cat([r[train], f[train]])
            mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
            y = torch.cat([torch.ones(int(train.sum())), -torch.ones(int(train.sum()))]).to(x.dtype)
            w, b = _fit_linear_svm((x - mean) / std, y, c)
            score_r = ((r[held] - mean) / std) @ w + b
            score_f = ((f[held] - mean) / std) @ w + b
            paired_wins += (score_f > score_r).sum().item()
            real_wrong += (score_r <= 0).sum().item()
            fake_wrong += (score_f > 0).sum().item()
    return paired_wins / n, (real_wrong + fake_wrong) / (2 * n)


@register_metric("ids", needs=("inception",), better="higher")
def ids(inception: FeaturePair, *, tag: str, split: str, options: MetricOptions) -> dict[str, Any]:
    """U-IDS always; P-IDS too when ``options.paired`` (generated image i restores real image i)."""
    real, fake = inception.real.features, inception.fake.features
    if real is None or fake is None:
        raise ConfigError("metrics", "ids needs the raw Inception features of both image sets")
    p_ids, u_ids = discriminative_scores(real, fake, seed=options.seed)
    out: dict[str, Any] = {f"uids{tag}_{split}": u_ids}
    if options.paired:
        out[f"pids{tag}_{split}"] = p_ids
    return out
