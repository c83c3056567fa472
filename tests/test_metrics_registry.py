"""The metric registry: a metric is one decorated function; compute_metrics finds it by name
and computes only the feature sources it needs."""

import numpy as np
import pytest
import torch

import ganforge.metrics.evaluator as evaluate
from ganforge.cli import main
from ganforge.errors import ConfigError
from ganforge.metrics.compute import compute_metrics
from ganforge.metrics.catalog import metric_names, register_metric, unregister_metric


@pytest.fixture
def real_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "real.npz"
    images = rng.integers(0, 200, (16, 28, 28), dtype=np.uint8)
    np.savez(path, images=images)
    return str(path), torch.from_numpy(images)[:, None]


@pytest.fixture
def mean_gap():
    """A custom metric: the largest gap between the real and generated feature means."""
    calls = []

    @register_metric("mean_gap", needs=("inception",))
    def _mean_gap(inception, *, tag, split, options):
        calls.append((tag, split, options))
        return {f"mean_gap{tag}_{split}": float(np.abs(inception.real.mean() - inception.fake.mean()).max())}

    yield calls
    unregister_metric("mean_gap")


def test_a_registered_metric_is_computed_by_name(real_npz, mean_gap, stand_in_extractor):
    path, real = real_npz
    same = compute_metrics(lambda b: real[:b], path, "all", ("fid", "mean_gap"), n=16, use_cache=False, seed=3)
    assert list(same)[:2] == ["fid16_all", "mean_gap16_all"]  # registration order
    assert same["mean_gap16_all"] == pytest.approx(0.0, abs=1e-9)
    assert "stand-in" in same["protocol"]
    brighter = compute_metrics(lambda b: real[:b] + 50, path, "all", ("MEAN_GAP",), n=16, use_cache=False)
    assert brighter["mean_gap16_all"] > 0.1 and "fid16_all" not in brighter
    tag, split, options = mean_gap[0]
    assert (tag, split, options.seed) == ("16", "all", 3)


def test_only_the_sources_a_metric_needs_are_computed(real_npz, monkeypatch):
    class NoInception:
        def __init__(self, *args, **kwargs):
            raise AssertionError("Inception features were computed for a metric that does not need them")

    monkeypatch.setattr(evaluate, "InceptionFeatures", NoInception)

    @register_metric("count_only")
    def _count(*, tag, split, options):
        return {f"count_only_{split}": tag}

    try:
        path, real = real_npz
        res = compute_metrics(lambda b: real[:b], path, "all", ("count_only",), n=8)
    finally:
        unregister_metric("count_only")
    assert res["count_only_all"] == "8" and res["n_fake"] == 8
    assert "count_only" not in metric_names()


def test_unknown_metric_names_the_registered_ones(real_npz, mean_gap, capsys):
    path, real = real_npz
    with pytest.raises(ConfigError) as err:
        compute_metrics(lambda b: real[:b], path, "all", ("fid", "fidd"), n=8)
    assert "'fidd'" in str(err.value)
    assert all(name in str(err.value) for name in ("fid", "kid", "pr", "cls", "mean_gap"))
    assert main(["eval", "--real", path, "--fake", path, "--metrics", "fid,nope"]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "nope" in line and "fid, kid, pr, cls" in line


def test_registration_mistakes_are_programming_errors():
    with pytest.raises(ValueError, match="already registered"):
        register_metric("fid", needs=("inception",))(lambda **kw: {})
    with pytest.raises(ValueError, match="unknown source"):
        register_metric("texture", needs=("vgg",))
    with pytest.raises(ValueError, match="lower case"):
        register_metric("FID2")
    assert metric_names()[:4] == ("fid", "kid", "pr", "cls")
