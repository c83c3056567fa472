"""Stacked Fashion-MNIST (1000 modes) and the ``modes`` metric, with a stand-in classifier."""

from pathlib import Path

import pytest
import torch

import ganforge.metrics.mode_coverage as modes_module
from ganforge.metrics.catalog import ImagePair, MetricOptions, get_metrics
from ganforge.data.stacked import stack_images
from ganforge.metrics.mode_coverage import coverage


def _base(n=50):
    """Gray images whose single pixel value encodes their class: image i has class i % 10."""
    labels = torch.arange(n) % 10
    images = (labels * 20 + 5).to(torch.uint8)[:, None, None, None].expand(n, 1, 4, 4).contiguous()
    return images, labels


def test_stacking_is_deterministic_by_seed_and_labels_follow_the_channels():
    images, labels = _base()
    a, la = stack_images(images, labels, 200, seed=3)
    b, lb = stack_images(images, labels, 200, seed=3)
    c, _ = stack_images(images, labels, 200, seed=4)
    assert a.shape == (200, 3, 4, 4) and a.dtype == torch.uint8
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    channel_classes = (a[:, :, 0, 0].long() - 5) // 20  # (N, 3)
    assert torch.equal(la, 100 * channel_classes[:, 0] + 10 * channel_classes[:, 1] + channel_classes[:, 2])
    assert len(la.unique()) > 150  # channels drawn independently: many of the 1000 modes


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Fashion-MNIST not installed")
def test_stacked_fashion_mnist_source():
    from ganforge.data import load_dataset

    test = load_dataset("stacked-fashion-mnist", "test")
    again = load_dataset("stacked-fashion-mnist", "test")
    assert test.images.shape == (26_000, 3, 28, 28) and test.num_classes == 1000
    assert torch.equal(test.images, again.images) and torch.equal(test.labels, again.labels)
    assert len(test.labels.unique()) > 990


class PixelClassifier:
    """Stand-in for the domain classifier: the class is read from the image's value (see ``_base``)."""

    def predict(self, images):
        classes = ((images[:, 0, 0, 0].long() - 5) // 20).clamp(0, 9)
        return torch.zeros(len(images), 1), torch.nn.functional.one_hot(classes, 10).float()


def test_coverage_and_kl_of_a_known_histogram():
    assert coverage(torch.arange(1000)) == (1000, pytest.approx(0.0))
    covered, kl = coverage(torch.tensor([7, 7, 8, 8]))  # two modes, equally often
    assert covered == 2 and kl == pytest.approx(torch.log(torch.tensor(500.0)).item())


def test_modes_metric_on_a_generator_with_a_known_histogram(monkeypatch):
    monkeypatch.setattr(modes_module, "mode_classifier", lambda: PixelClassifier())
    images, labels = _base()
    real, _ = stack_images(images, labels, 3000, seed=1)
    # A collapsed generator: channel classes (a, b, c) with a, b in {0, 1} and c = 5 only: 4 modes, equally often.
    fake = torch.stack([real[:, 0], real[:, 0], real[:, 0]], 1).clone()
    fake[:, 0] = torch.where(torch.arange(3000) % 2 == 0, 5, 25).to(torch.uint8)[:, None, None]
    fake[:, 1] = torch.where(torch.arange(3000) % 4 < 2, 5, 25).to(torch.uint8)[:, None, None]
    fake[:, 2] = 105
    (metric,) = get_metrics(["modes"])
    out = metric({"images": ImagePair(real=real, fake=fake)}, "3k", "test", MetricOptions())
    assert out["modes3k"] == 4 and out["modes_kl3k"] == pytest.approx(torch.log(torch.tensor(250.0)).item())
    assert out["modes_real_test"] > 900 and out["modes_kl_real_test"] < 0.5
    assert metric.needs == ("images",) and metric.better == "higher"


def test_modes_classifies_the_real_images_once_per_evaluator_and_refuses_gray_images(monkeypatch):
    calls = []

    class Counting(PixelClassifier):
        def predict(self, x):
            calls.append(x.shape[0])
            return super().predict(x)

    monkeypatch.setattr(modes_module, "mode_classifier", lambda: Counting())
    images, labels = _base()
    real, _ = stack_images(images, labels, 300, seed=1)
    fake, _ = stack_images(images, labels, 200, seed=2)
    (metric,) = get_metrics(["modes"])
    cache = {}  # what the evaluator keeps across its evaluations
    first = metric({"images": ImagePair(real=real, fake=fake, cache=cache)}, "200", "test", MetricOptions())
    second = metric({"images": ImagePair(real=real, fake=fake, cache=cache)}, "200", "test", MetricOptions())
    assert first == second and calls == [300] * 3 + [200] * 3 + [200] * 3  # the real side once, three channels
    from ganforge.errors import ConfigError

    with pytest.raises(ConfigError, match="3-channel"):
        metric({"images": ImagePair(real=images, fake=images)}, "50", "test", MetricOptions())
