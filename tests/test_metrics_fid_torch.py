"""The torch Frechet path and device-side feature statistics agree with the numpy reference."""

import numpy as np
import pytest
import torch

from ganforge.metrics.fid import FrechetReference, frechet_distance, frechet_distance_torch
from ganforge.metrics.stats import FeatureStats


def gaussian_stats(rng, n, d, scale=1.0, offset=0.0):
    x = rng.standard_normal((n, d)) * rng.uniform(0.2, 2.0, d) * scale + offset
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


@pytest.mark.parametrize("d, n1, n2", [(1, 50, 40), (8, 200, 150), (64, 500, 400),
                                       (64, 30, 20),    # both singular: fewer samples than dimensions
                                       (128, 400, 40)])  # the second one singular
def test_torch_matches_numpy(d, n1, n2):
    rng = np.random.default_rng(d + n2)
    mu1, c1 = gaussian_stats(rng, n1, d)
    mu2, c2 = gaussian_stats(rng, n2, d, scale=1.3, offset=0.1)
    ref = frechet_distance(mu1, c1, mu2, c2)
    assert ref > 0
    assert frechet_distance_torch(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-6)
    t = [torch.from_numpy(a) for a in (mu1, c1, mu2, c2)]
    assert frechet_distance_torch(*t) == pytest.approx(ref, rel=1e-6)


def test_reference_reuses_its_square_root_across_calls():
    rng = np.random.default_rng(0)
    mu_r, c_r = gaussian_stats(rng, 300, 32)
    ref = FrechetReference(mu_r, c_r)
    s = ref.sqrt_cov.clone()
    torch.testing.assert_close(s @ s, torch.from_numpy(c_r), rtol=1e-9, atol=1e-12)
    for scale in (1.0, 1.5, 3.0):
        mu, c = gaussian_stats(rng, 200, 32, scale=scale)
        assert ref.distance(mu, c) == pytest.approx(frechet_distance(mu_r, c_r, mu, c), rel=1e-6)
        # the square root is not recomputed (nor modified) by a call
        assert torch.equal(ref.sqrt_cov, s)
    assert ref.distance(mu_r, c_r) == pytest.approx(0.0, abs=1e-6 * float(np.trace(c_r)))


def test_torch_path_rejects_what_numpy_rejects():
    with pytest.raises(ValueError):
        frechet_distance_torch(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError):
        FrechetReference(np.zeros(2), np.eye(2)).distance(np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        FrechetReference(np.zeros(2), np.eye(2)).distance(np.full(2, np.nan), np.eye(2))


def numpy_moments(chunks):
    """The previous host-side accumulation: float64 numpy, shifted by the first batch's mean."""
    shift = chunks[0].mean(0)
    s = np.zeros(shift.shape)
    outer = np.zeros((shift.size, shift.size))
    count = 0
    for x in chunks:
        xc = x - shift
        s += xc.sum(0)
        outer += xc.T @ xc
        count += x.shape[0]
    m = s / count
    cov = (outer - count * np.outer(m, m)) / (count - 1)
    return shift + m, 0.5 * (cov + cov.T)


def test_tensor_accumulation_equals_numpy_and_round_trips(tmp_path):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((90, 16)) * 3 + 100).astype(np.float32)  # float32, like Inception features
    chunks = np.array_split(x, [7, 40, 41])
    st = FeatureStats(max_items=10)
    for c in chunks:
        st.append(torch.from_numpy(c))  # tensors, accumulated by torch
    assert st.device == torch.device("cpu") and st.count == 90
    mu_ref, cov_ref = numpy_moments([c.astype(np.float64) for c in chunks])
    mu, cov = st.mean_cov()
    assert isinstance(mu, np.ndarray) and mu.dtype == cov.dtype == np.float64
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-13)
    np.testing.assert_allclose(cov, cov_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-9)
    mu_t, cov_t = st.mean_cov_torch()
    assert mu_t.dtype == torch.float64 and torch.equal(cov_t, torch.from_numpy(cov))
    np.testing.assert_array_equal(st.features, x[:10])

    # same .npz layout as before: plain float64 arrays, readable without pickle
    path = st.save(tmp_path / "s.npz")
    with np.load(path, allow_pickle=False) as z:
        assert z["shift"].shape == (16,) and z["outer"].shape == (16, 16) and z["sum"].dtype == np.float64
        assert int(z["count"]) == 90 and z["features"].shape == (10, 16)
    back = FeatureStats.load(path)
    for a, b in zip(back.mean_cov(), st.mean_cov()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.features, st.features)
    # a loaded file keeps accumulating like the original
    more = rng.standard_normal((5, 16)).astype(np.float32)
    back.append(more)
    st.append(torch.from_numpy(more))
    for a, b in zip(back.mean_cov(), st.mean_cov()):
        np.testing.assert_array_equal(a, b)


def test_numpy_and_tensor_inputs_agree_and_nan_is_refused():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 6))
    a, b = FeatureStats(), FeatureStats()
    for c in np.array_split(x, 3):
        a.append(c)
        b.append(torch.from_numpy(c))
    for u, v in zip(a.mean_cov(), b.mean_cov()):
        np.testing.assert_array_equal(u, v)
    assert a.features is None  # max_items=0 keeps no raw rows
    with pytest.raises(ValueError, match="NaN"):
        a.append(torch.full((2, 6), float("nan")))
