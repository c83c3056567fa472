"""Kernel Inception Distance: formula, unbiasedness, sensitivity."""

import numpy as np
import pytest
import torch

from ganforge.metrics.kid import kernel_inception_distance, polynomial_mmd2_unbiased


def naive_mmd2(x, y):
    """Direct double loops over the definition (independent of the vectorised code)."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_matches_definition():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((7, 4)) + 0.3
    got = polynomial_mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y))
    assert got == pytest.approx(naive_mmd2(x, y), rel=1e-10)


def test_unbiased_for_same_distribution():
    # Over many independent pairs of samples from one distribution, the estimator
    # averages to 0 (a biased V-statistic would be clearly positive at m = 20).
    gen = torch.Generator().manual_seed(1)
    vals = np.array([polynomial_mmd2_unbiased(torch.randn(20, 8, generator=gen, dtype=torch.float64),
                                              torch.randn(20, 8, generator=gen, dtype=torch.float64))
                     for _ in range(400)])
    se = vals.std() / np.sqrt(len(vals))
    assert abs(vals.mean()) < 4 * se
    assert (vals < 0).any()  # unbiased estimates straddle zero


def test_positive_for_shifted_distribution():
    rng = np.random.default_rng(2)
    real = rng.standard_normal((300, 16))
    same = rng.standard_normal((300, 16))
    shifted = rng.standard_normal((300, 16)) + 0.5
    m0, s0 = kernel_inception_distance(real, same, n_subsets=20, subset_size=100)
    m1, s1 = kernel_inception_distance(real, shifted, n_subsets=20, subset_size=100)
    assert abs(m0) < 3 * s0 + 1e-3
    assert m1 > 10 * max(abs(m0), s0 / np.sqrt(20))


def test_seeded_and_clamped():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((30, 5)), rng.standard_normal((12, 5))
    r1 = kernel_inception_distance(a, b, n_subsets=5, subset_size=1000, seed=7)
    r2 = kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(b), n_subsets=5,
                                   subset_size=1000, seed=7)
    assert r1 == r2
    # subset_size clamped to 12; a single subset has std 0.
    mean, std = kernel_inception_distance(a[:12], b, n_subsets=1)
    assert std == 0.0
    assert mean == pytest.approx(polynomial_mmd2_unbiased(torch.from_numpy(a[:12]), torch.from_numpy(b)))


def test_errors():
    with pytest.raises(ValueError):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 3)), n_subsets=0)
