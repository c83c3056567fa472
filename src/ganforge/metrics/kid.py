"""Kernel Inception Distance (Binkowski et al. 2018).

KID is the unbiased estimate of the squared maximum mean discrepancy (MMD^2)
between two feature distributions, with the cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3,     d = feature dimension,

averaged over ``n_subsets`` random subsets of ``m = subset_size`` rows drawn
(without replacement) from each set. For subsets X, Y of size m:

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1))
            + sum_{i != j} k(y_i, y_j) / (m (m - 1))
            - 2 sum_{i, j} k(x_i, y_j) / m^2

The estimator is unbiased, so it is centred on 0 (and can be negative) when
both sets come from the same distribution. Computed in float64 on CPU.

Subsets must differ for their spread to mean anything: :func:`kid_subset_size`
halves the subset size when a subset would hold the whole of the smaller set
(so that 100 subsets of 40 out of 40 images are not 100 copies of one value),
and says when no spread can be estimated at all.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_tensor64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def polynomial_mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 with the cubic kernel for ``x`` ``(m, D)`` and ``y`` ``(n, D)``, float64.

    Sizes may differ (``m, n >= 2``); the within-set terms drop the diagonal.
    """
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"need at least 2 rows in each set, got {m} and {n}")
    kxx = (x @ x.T / d + 1.0).pow_(3)
    kyy = (y @ y.T / d + 1.0).pow_(3)
    kxy = (x @ y.T / d + 1.0).pow_(3)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid_subset_size(n_real: int, n_fake: int, requested: int = 1000) -> int | None:
    """Rows per KID subset for sets of ``n_real`` and ``n_fake`` features, or None for no subsets.

    ``min(requested, n_real, n_fake)``, halved when that is the whole smaller set
    (every subset of it would be the same rows, and the spread a rounding error).
    None when the halved size is below 2: then only one estimate, on all rows, exists.
    """
    smaller = min(int(n_real), int(n_fake))
    m = min(int(requested), smaller)
    if m == smaller:
        m = smaller // 2
    return m if m >= 2 else None


def kernel_inception_distance(real, fake, n_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID between two feature sets.

    Args:
        real: features ``(N1, D)`` (torch or numpy).
        fake: features ``(N2, D)``.
        n_subsets: number of random subset pairs.
        subset_size: rows per subset; clamped to ``min(N1, N2)``.
        seed: seed of the subset draws (the result is deterministic given it).

    Returns:
        ``(mean, std)`` of MMD^2 over the subsets (std is the population std
        across subsets, 0 for a single subset).
    """
    x, y = _as_tensor64(real), _as_tensor64(fake)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected (N1, D) and (N2, D) features, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 features in each set, got {x.shape[0]} "
                         f"and {y.shape[0]}")
    gen = torch.Generator().manual_seed(int(seed))
    values = np.empty(n_subsets)
    for i in range(n_subsets):
        ix = torch.randperm(x.shape[0], generator=gen)[:m]
        iy = torch.randperm(y.shape[0], generator=gen)[:m]
        values[i] = polynomial_mmd2_unbiased(x[ix], y[iy])
    return float(values.mean()), float(values.std())
