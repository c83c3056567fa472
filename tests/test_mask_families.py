"""LaMa's thin / medium / thick and CoModGAN's masks: hole-ratio distributions, buckets, determinism."""

from __future__ import annotations

import pytest
import torch

from ganforge.inpaint.mask_families import COMOD_BUCKETS, in_bucket
from ganforge.inpaint.masks import make_masks

# Mean hole ratio of 200 masks at 64 px (measured: thin 0.29, medium 0.21, thick 0.33, lama 0.28, comod 0.64,
# lama-comod 0.37: three parts LaMa, one part comod).
MEAN_RANGES = {"thin": (0.22, 0.36), "medium": (0.15, 0.28), "thick": (0.26, 0.41), "lama": (0.22, 0.35),
               "comod": (0.55, 0.72), "lama-comod": (0.30, 0.45)}


@pytest.mark.parametrize("kind", sorted(MEAN_RANGES))
def test_family_hole_ratio_distribution(kind):
    masks = make_masks(kind, 200, 64, gen=torch.Generator().manual_seed(0))
    assert masks.shape == (200, 1, 64, 64) and set(masks.unique().tolist()) <= {0.0, 1.0}
    ratios = masks.mean((1, 2, 3))
    lo, hi = MEAN_RANGES[kind]
    assert lo <= ratios.mean().item() <= hi
    assert (ratios > 0).all() and (ratios < 1).all()
    if kind == "lama-comod":  # about a quarter are CoModGAN's (mean hole 0.64), larger than most LaMa masks
        assert 25 <= (ratios > 0.5).sum().item() <= 90 and (ratios > 0.7).any()
    elif kind != "comod":
        assert (ratios < 0.7).all()  # LaMa keeps masks below 70 % hole


@pytest.mark.parametrize("bucket", COMOD_BUCKETS)
def test_comod_buckets_stay_inside_their_bounds(bucket):
    ratios = make_masks("comod", 40, 64, gen=torch.Generator().manual_seed(1), hole_range=bucket).mean((1, 2, 3))
    assert all(in_bucket(r, bucket) for r in ratios.tolist())


@pytest.mark.parametrize("kind", ["thin", "medium", "thick", "lama", "comod", "lama-comod"])
def test_families_are_deterministic_by_seed(kind):
    a, b, c = (make_masks(kind, 8, (48, 64), gen=torch.Generator().manual_seed(s)) for s in (3, 3, 4))
    assert a.shape == (8, 1, 48, 64)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bucket_bounds():
    assert in_bucket(0.2, (0.0, 0.2)) and not in_bucket(0.2, (0.2, 0.4))
    assert not in_bucket(1.0, (0.8, 1.0)) and not in_bucket(0.0, (0.0, 0.2))
