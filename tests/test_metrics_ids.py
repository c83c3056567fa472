"""P-IDS / U-IDS: the cross-fitted linear SVM on known feature distributions."""

import numpy as np
import pytest
import torch

from ganforge.errors import ConfigError
from ganforge.metrics.catalog import FeaturePair, MetricOptions, get_metrics, compute_registered
from ganforge.metrics.ids import _fit_linear_svm, discriminative_scores
from ganforge.metrics.stats import FeatureStats


def _features(n=200, d=64, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, d))
    fake = rng.normal(size=(n, d))
    fake[:, 0] += shift
    return real, fake


def test_svm_separates_separable_data():
    x = torch.tensor([[-2.0, 0.1], [-1.5, -0.3], [1.7, 0.2], [2.2, -0.1]], dtype=torch.float64)
    y = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64)
    w, b = _fit_linear_svm(x, y, c=10.0)
    assert torch.equal(torch.sign(x @ w + b), y)
    assert abs(w[0].item()) > 5 * abs(w[1].item())  # the separating direction is the first axis


def test_indistinguishable_sets_score_near_one_half():
    real, fake = _features(shift=0.0)
    p_ids, u_ids = discriminative_scores(real, fake)
    assert 0.35 < u_ids < 0.65
    assert 0.35 < p_ids < 0.65


def test_shifted_fakes_are_caught():
    real, fake = _features(shift=6.0)
    p_ids, u_ids = discriminative_scores(real, fake)
    assert u_ids < 0.05 and p_ids < 0.05
    # A smaller shift is harder to catch: scores between the two extremes.
    p_mid, u_mid = discriminative_scores(*_features(shift=1.0))
    assert u_ids < u_mid < 0.5 and p_ids < p_mid < 0.5


def test_more_dimensions_than_images_do_not_read_zero():
    # In-sample, 2048-d features of 100 pairs are always separable; cross-fitting is not fooled.
    real, fake = _features(n=100, d=2048)
    _, u_ids = discriminative_scores(real, fake)
    assert u_ids > 0.3


def test_deterministic_by_seed_and_checked_sizes():
    real, fake = _features(shift=1.0)
    assert discriminative_scores(real, fake, seed=3) == discriminative_scores(real, fake, seed=3)
    with pytest.raises(ConfigError, match="paired sets"):
        discriminative_scores(real, fake[:-1])
    with pytest.raises(ConfigError, match="at least 10"):
        discriminative_scores(real[:6], fake[:6])


def test_registered_metric_reports_pids_only_when_paired():
    real, fake = _features(shift=1.0)
    stats = []
    for x in (real, fake):
        st = FeatureStats(max_items=len(x))
        st.append(torch.from_numpy(x).float())
        stats.append(st)
    pair = FeaturePair(*stats)
    ids = get_metrics(["ids"])
    unpaired = compute_registered(ids, {"inception": pair}, "200", "test", MetricOptions())["ids"]
    paired = compute_registered(ids, {"inception": pair}, "200", "test", MetricOptions(paired=True))["ids"]
    assert set(unpaired) == {"uids200_test"}
    assert set(paired) == {"uids200_test", "pids200_test"}
    assert paired["uids200_test"] == unpaired["uids200_test"]
