"""Frechet distance, streaming feature statistics and the statistics cache."""

import numpy as np
import pytest
import scipy.linalg

from ganforge.errors import DataError
from ganforge.metrics.cache import cached_stats, load_cached_stats, stats_key, stats_path
from ganforge.metrics.fid import fid_from_features, frechet_distance, trace_sqrt_product
from ganforge.metrics.stats import FeatureStats


def random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or 2 * d))
    return a @ a.T / a.shape[1]


def scipy_fid(mu1, c1, mu2, c2):
    """The textbook formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [1, 5, 32])
def test_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    c1, c2 = random_cov(rng, d), random_cov(rng, d)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(scipy_fid(mu1, c1, mu2, c2), rel=1e-8, abs=1e-9)


def test_closed_form_diagonal():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_identical_and_symmetric():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 64)) + 3.0  # fewer samples than dimensions: singular covariance
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    y = rng.standard_normal((50, 64))
    assert fid_from_features(x, y) == pytest.approx(fid_from_features(y, x), rel=1e-9)


def test_singular_trace_sqrt_is_real_and_finite():
    rng = np.random.default_rng(1)
    c1, c2 = random_cov(rng, 30, rank=3), random_cov(rng, 30, rank=4)
    t = trace_sqrt_product(c1, c2)
    assert np.isfinite(t) and t >= 0
    # Frechet distance of PSD covariances is never negative.
    assert frechet_distance(np.zeros(30), c1, np.zeros(30), c2) >= 0


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError):
        frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))


def test_streaming_stats_equal_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((103, 7)) * 5 + 1e4  # large offset: checks the shifted sums
    st = FeatureStats()
    for chunk in np.array_split(x, [1, 10, 50, 51]):
        st.append(chunk)
    mu, cov = st.mean_cov()
    assert st.count == 103
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    assert st.features is None


def test_max_items_keeps_first_rows_and_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    st = FeatureStats(max_items=12, metadata={"what": "test"})
    st.append(x[:10])
    st.append(x[10:])
    np.testing.assert_array_equal(st.features, x[:12])
    path = st.save(tmp_path / "sub" / "s.npz")
    with np.load(path, allow_pickle=False) as z:  # readable without pickle
        assert int(z["count"]) == 30
    back = FeatureStats.load(path)
    assert back.metadata == {"what": "test"} and back.count == 30
    np.testing.assert_array_equal(back.features, x[:12])
    for a, b in zip(back.mean_cov(), st.mean_cov()):
        np.testing.assert_array_equal(a, b)


def test_all_kept_features_replace_the_outer_products_in_the_file(tmp_path):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((20, 64)) * 3 + 5).astype(np.float32)  # fewer rows than dimensions
    st = FeatureStats(max_items=20)
    for part in np.split(x, [7, 13]):
        st.append(part)
    path = st.save(tmp_path / "small.npz")
    with np.load(path, allow_pickle=False) as z:
        assert "outer" not in z.files and z["features"].shape == (20, 64)
    back = FeatureStats.load(path)
    for a, b in zip(back.mean_cov(), st.mean_cov()):
        np.testing.assert_array_equal(a, b)  # a cached statistic gives the same numbers to the bit
    np.testing.assert_allclose(back.mean_cov()[1], np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-10)
    back.append(x[:3])  # a loaded file keeps accumulating like the original
    st.append(x[:3])
    np.testing.assert_allclose(back.mean_cov()[1], st.mean_cov()[1], rtol=1e-12, atol=1e-12)
    partial = FeatureStats(max_items=5)
    partial.append(x)
    with np.load(partial.save(tmp_path / "partial.npz"), allow_pickle=False) as z:
        assert "outer" in z.files  # not every feature kept: the sums stay in the file


def test_stats_errors(tmp_path):
    st = FeatureStats()
    with pytest.raises(ValueError):
        st.mean_cov()
    st.append(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        st.append(np.zeros((2, 4)))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(DataError):
        FeatureStats.load(bad)


def test_cache_computes_once_and_validates_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        st = FeatureStats(max_items=5)
        st.append(np.arange(12.0).reshape(4, 3))
        return st

    key = stats_key("fashion-mnist", "test", 4, None, None, "extractor-x", 5, subset_seed=0)
    a = cached_stats(key, compute, tmp_path)
    b = cached_stats(key, compute, tmp_path)
    assert len(calls) == 1 and b.count == a.count == 4
    path = stats_path(key, tmp_path)
    assert path.name.startswith("fashion-mnist-test-4-") and path.suffix == ".npz"
    # Another extractor gives another file; a file whose stored key differs is ignored.
    key2 = dict(key, extractor="extractor-y")
    assert stats_path(key2, tmp_path) != path
    path.rename(stats_path(key2, tmp_path))
    assert load_cached_stats(key2, tmp_path) is None
    cached_stats(key2, compute, tmp_path)
    assert len(calls) == 2
    cached_stats(key, compute, tmp_path, use_cache=False)
    assert len(calls) == 3
