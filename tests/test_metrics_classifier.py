"""Domain classifier: architecture, score formula, caching, and accuracy on Fashion-MNIST."""

import math

import pytest
import torch

from ganforge.errors import CheckpointError, DataError
from ganforge.metrics.classifier import (
    DomainClassifier,
    classifier_path,
    classifier_score,
    get_domain_classifier,
    load_classifier,
    save_classifier,
    train_classifier,
)

TINY = (4, 4, 8)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 17)])
def test_shapes_any_size_and_channels(channels, size):
    model = DomainClassifier(in_channels=1, num_classes=7, widths=TINY, feat_dim=16).eval()
    x = torch.randint(0, 256, (3, channels, size, size), dtype=torch.uint8)
    feats, logits = model.predict(x)
    assert feats.shape == (3, 16) and logits.shape == (3, 7)
    # Float input in [-1, 1] is the same image as its uint8 version.
    f2, _ = model.predict(x.float() / 127.5 - 1)
    torch.testing.assert_close(f2, feats)


def test_classifier_score_limits():
    k = 10
    confident_balanced = torch.eye(k).repeat(20, 1) * 50.0   # one-hot, every class equally often
    mean, std = classifier_score(confident_balanced, splits=4)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(200, k)
    collapsed[:, 3] = 50.0                                   # one class only
    assert classifier_score(collapsed)[0] == pytest.approx(1.0, abs=1e-6)
    uniform = torch.zeros(100, k)                            # no confidence at all
    assert classifier_score(uniform)[0] == pytest.approx(1.0, abs=1e-9)
    # Two equally likely confident classes: exp(log 2) = 2.
    two = torch.tensor([[30.0, 0.0], [0.0, 30.0]]).repeat(50, 1)
    assert classifier_score(two, splits=1)[0] == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError):
        classifier_score(torch.zeros(5, 3), splits=10)


def synthetic(n=256, seed=0):
    """Two easy classes: bright square on the left vs on the right."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 40, (n, 1, 12, 12), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    x[y == 0, :, 3:9, 0:5] = 250
    x[y == 1, :, 3:9, 7:12] = 250
    return x, y


def test_training_learns_and_roundtrips(tmp_path):
    x, y = synthetic()
    model = train_classifier(x, y, 2, epochs=4, batch_size=32, lr=1e-2, widths=TINY, bf16=False)
    assert not model.training
    assert model.accuracy(x, y) > 0.95
    path = save_classifier(model, tmp_path / "toy.safetensors", {"dataset": "toy", "test_accuracy": 1.0})
    assert path.with_suffix(".json").is_file()
    back, meta = load_classifier(path)
    assert meta["dataset"] == "toy" and meta["config"]["widths"] == list(TINY)
    torch.testing.assert_close(back.predict(x)[1], model.predict(x)[1])


def test_cache_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_classifier(bad)
    with pytest.raises(CheckpointError, match="no trained domain classifier"):
        get_domain_classifier("fashion-mnist", cache_dir=tmp_path, train=False)
    assert classifier_path("fashion-mnist", tmp_path).name == "fashion-mnist.safetensors"


def fashion_mnist_or_skip():
    from ganforge.data import load_dataset

    try:
        load_dataset("fashion-mnist", "test", download=False)
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")


@pytest.mark.slow
@pytest.mark.realdata
def test_fashion_mnist_accuracy(tmp_path):
    fashion_mnist_or_skip()
    model, meta = get_domain_classifier("fashion-mnist", cache_dir=tmp_path)
    assert meta["test_accuracy"] >= 0.92, meta
    assert (tmp_path / "fashion-mnist.safetensors").is_file()
    # Second call: loaded from the cache, not retrained.
    again, meta2 = get_domain_classifier("fashion-mnist", cache_dir=tmp_path, train=False)
    assert math.isclose(meta2["test_accuracy"], meta["test_accuracy"])


def test_compute_metrics_cls_only(tmp_path):
    """The classifier metrics end to end on a tiny labelled .npz dataset (no Inception needed)."""
    import numpy as np

    from ganforge.metrics.compute import compute_metrics

    x, y = synthetic(n=160, seed=1)
    spec = str(tmp_path / "toy.npz")
    np.savez(spec, x_train=x[:128].numpy(), y_train=y[:128].numpy(),
             x_test=x[128:].numpy(), y_test=y[128:].numpy())
    res = compute_metrics(lambda b: x[128:128 + b], spec, "test", ("cls",), n=32,
                          classifier_dir=tmp_path / "cls", batch_size=16)
    assert len(list((tmp_path / "cls").glob("*.safetensors"))) == 1
    assert set(res) >= {"cls_score32", "cls_fid32_test", "cls_score_real_test", "cls_accuracy", "protocol"}
    # Fake = the real test images themselves: identical scores, zero distance (up to
    # batch-size dependent float32 rounding, which the square roots of the ~100 null
    # eigenvalues of these 32-sample covariances amplify to ~1e-3).
    assert res["cls_fid32_test"] == pytest.approx(0.0, abs=1e-2)
    assert res["cls_score32"] == pytest.approx(res["cls_score_real_test"], rel=1e-4, abs=1e-4)
    assert 1.0 <= res["cls_score32"][0] <= 2.0
