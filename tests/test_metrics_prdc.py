"""Improved precision/recall on toy point sets with known answers."""

import numpy as np
import pytest
import torch

from ganforge.metrics.prdc import knn_radii, precision_recall


def clusters(rng, centres, n_each, scale=0.1):
    return np.concatenate([c + scale * rng.standard_normal((n_each, len(c))) for c in centres])


def test_identical_sets():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8))
    assert precision_recall(x, x.copy()) == (1.0, 1.0)


def test_disjoint_far_clusters():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((100, 4))
    fake = rng.standard_normal((120, 4)) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_mode_collapse_keeps_precision_loses_recall():
    rng = np.random.default_rng(2)
    centres = [np.array(c, float) for c in ([0, 0], [10, 0], [0, 10], [10, 10])]
    real = clusters(rng, centres, 100)
    fake = clusters(rng, centres[:1], 400, scale=0.02)  # all mass in one mode, inside it
    p, r = precision_recall(real, fake, k=3)
    assert p == 1.0
    assert r < 0.3


def test_knn_radii_brute_force_and_blocks():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((57, 6)))
    d = torch.cdist(x, x) ** 2
    expected = d.sort(1).values[:, 3]  # index 0 is the point itself
    torch.testing.assert_close(knn_radii(x, k=3, block_size=10), expected, rtol=1e-9, atol=1e-9)
    a, b = rng.standard_normal((80, 5)), rng.standard_normal((70, 5)) + 0.5
    assert precision_recall(a, b, block_size=7) == precision_recall(a, b, block_size=1000)
    assert precision_recall(a, b, dtype=torch.float64) == precision_recall(a, b)


def test_errors():
    with pytest.raises(ValueError):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
    with pytest.raises(ValueError):
        precision_recall(np.zeros((10, 2)), np.zeros((10, 3)))
