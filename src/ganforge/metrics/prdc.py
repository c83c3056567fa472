"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019).

Each feature set defines a manifold estimate: the union of balls centred on
its points, each with radius = distance to the point's k-th nearest neighbour
in the same set (the point itself excluded).

* precision = fraction of fake points inside the real manifold
  (fidelity: are generated samples realistic?);
* recall = fraction of real points inside the fake manifold
  (coverage: is the real variety reproduced?).

A point ``q`` is inside the manifold of set ``S`` when ``|q - s| <= r_s`` for
some ``s`` in ``S``. Distances are computed block by block (``block_size``
rows against the whole other set), so 10k x 10k with D = 2048 needs about
``block_size * N * 4`` bytes at a time (40 MB for the defaults) instead of
400 MB for the full matrix. The cross-distance blocks fake x real are
computed once and serve both precision and recall.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_tensor(x, dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(dtype)
    return torch.from_numpy(np.asarray(x)).to(dtype)


def _sq_dists(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor,
              b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(len(a), len(b))`` via |a|^2 + |b|^2 - 2 a.b, clamped at 0."""
    d = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return d.clamp_(min=0.0)


def knn_radii(x: torch.Tensor, k: int = 3, block_size: int = 1000) -> torch.Tensor:
    """Squared distance of each row of ``x`` ``(N, D)`` to its k-th nearest other row: ``(N,)``."""
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} points, got {k}")
    sq = (x * x).sum(1)
    out = torch.empty(n, dtype=x.dtype)
    for start in range(0, n, block_size):
        d = _sq_dists(x[start:start + block_size], x, sq[start:start + block_size], sq)
        # The smallest entry of each row is the point itself (distance ~0), so the
        # (k+1)-th smallest is the k-th neighbour; duplicates of a point count as neighbours.
        out[start:start + block_size] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def precision_recall(real, fake, k: int = 3, block_size: int = 1000,
                     dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` ``(M, D)`` against ``real`` ``(N, D)``.

    Args:
        real, fake: feature sets (torch or numpy); each needs more than ``k`` rows.
        k: neighbour rank that defines the ball radii (3 in the paper).
        block_size: rows per distance block (memory ~ block_size * max(N, M) * 4 bytes).
        dtype: computation dtype; float32 is ample for distances between
            features of norm ~10-100 and about 2x faster than float64.

    Returns:
        ``(precision, recall)``, each in [0, 1].
    """
    r, f = _as_tensor(real, dtype), _as_tensor(fake, dtype)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"expected (N, D) and (M, D) features, got {tuple(r.shape)} "
                         f"and {tuple(f.shape)}")
    real_r2 = knn_radii(r, k, block_size)
    fake_r2 = knn_radii(f, k, block_size)
    r_sq, f_sq = (r * r).sum(1), (f * f).sum(1)
    fake_in_real = torch.zeros(f.shape[0], dtype=torch.bool)
    real_in_fake = torch.zeros(r.shape[0], dtype=torch.bool)
    for start in range(0, f.shape[0], block_size):
        stop = start + block_size
        d = _sq_dists(f[start:stop], r, f_sq[start:stop], r_sq)  # (B, N)
        fake_in_real[start:stop] = (d <= real_r2[None, :]).any(1)
        real_in_fake |= (d <= fake_r2[start:stop, None]).any(0)
    return float(fake_in_real.double().mean()), float(real_in_fake.double().mean())
