"""The perceptual distance on the FID Inception network: zero for identical images, ordered by damage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ganforge.errors import WeightsError
from ganforge.metrics.inception import PIP_HINT, InceptionFeatures, locate_inception_weights, verify_inception_weights
from ganforge.metrics.perceptual import PerceptualDistance, network_side


def _weights():
    try:
        path = locate_inception_weights()
        verify_inception_weights(path)
        return path
    except WeightsError:
        return None


needs_weights = pytest.mark.skipif(_weights() is None, reason=f"Inception weights not installed ({PIP_HINT})")


def _photos(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth colour fields with edges: something a perceptual distance can tell apart."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0.5, 3, 3)
        img = np.stack([np.sin(a * 6 * x + b), np.cos(b * 5 * y), np.sin(c * 4 * (x + y))], -1)
        img += (x > rng.uniform(0.3, 0.7))[..., None] * 0.8  # an edge
        out.append(np.clip((img + 1.5) * 70, 0, 255).astype(np.uint8))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def test_network_side_is_twice_the_image_within_128_and_299():
    assert [network_side(s, s) for s in (28, 64, 100, 128, 150, 256, 4000)] == [128, 128, 200, 256, 299, 299, 299]
    assert network_side(40, 90) == 180


@pytest.fixture(scope="module")
def distance():
    return PerceptualDistance(InceptionFeatures())


@needs_weights
def test_identical_images_are_at_zero_and_damage_is_ordered(distance):
    ref = _photos(4, 64)
    rng = np.random.default_rng(1)
    noisy = [torch.from_numpy(np.clip(ref.numpy() + rng.normal(0, s, ref.shape), 0, 255).astype(np.uint8))
             for s in (4, 16, 48)]
    blurred = torch.stack([torch.from_numpy(np.array(
        Image.fromarray(im.permute(1, 2, 0).numpy()).filter(ImageFilter.GaussianBlur(3)))).permute(2, 0, 1)
        for im in ref])
    d = distance.distances(ref, {"same": ref.clone(), "n4": noisy[0], "n16": noisy[1], "n48": noisy[2],
                                 "blur": blurred, "other": _photos(4, 64, seed=9)})
    assert d["same"].shape == (4,) and d["same"].dtype == torch.float64
    assert torch.all(d["same"] == 0)
    assert torch.all(d["n4"] < d["n16"]) and torch.all(d["n16"] < d["n48"])  # more noise, farther
    assert torch.all(d["blur"] > 0) and torch.all(d["other"] > d["n4"])  # another picture is far
    assert torch.all(d["n48"] <= 2.0)  # each layer's term is at most 2 for non-negative activations
    # Symmetric, batch-independent, and grayscale is replicated like FID's input.
    back = distance.distances(noisy[1], {"ref": ref})["ref"]
    assert torch.allclose(back, d["n16"], rtol=1e-4, atol=1e-6)
    one = distance.distances(ref[2:3], {"n16": noisy[1][2:3]})["n16"]
    assert torch.allclose(one, d["n16"][2:3], rtol=1e-4, atol=1e-6)
    gray = ref[:, :1]
    g = distance.distances(gray, {"rgb": gray.expand(-1, 3, -1, -1).contiguous()})["rgb"]
    assert torch.all(g == 0)
    assert "layers conv_2,conv_4,mixed_2,mixed_7,mixed_10" in distance.protocol


@needs_weights
def test_mismatched_sets_and_stand_in_extractors_are_refused(distance):
    with pytest.raises(ValueError, match="differ from the reference"):
        distance.distances(_photos(2, 64), {"x": _photos(3, 64)})
    with pytest.raises(TypeError, match="Inception network"):
        PerceptualDistance(object())


@needs_weights
def test_eval_inpaint_reports_the_distance_for_every_method(tmp_path):
    from ganforge.config import load_config
    from ganforge.data import ImageDataset
    from ganforge.inpaint.compare import evaluate_inpainting, format_table
    from ganforge.train.trainer import Trainer

    images = _photos(6, 32)
    cfg = load_config(None, [f"out_dir={tmp_path}", "task=inpaint", "model.arch=inpaint", "data.image_size=32",
                             "data.channels=3", "model.g_width=4", "model.d_width=4", "model.res_blocks=1",
                             "train.batch_size=2", "train.steps=1", "train.sample_every=1", "train.ckpt_every=1",
                             "train.sample_grid=3", "train.device=cpu", "train.precision=fp32",
                             "inpaint.masks=thick"])
    ds = ImageDataset(images, None, 0, "fields")
    Trainer(cfg, tmp_path / "run", dataset=ds).train()
    result = evaluate_inpainting(tmp_path / "run", masks="thick", n=6, methods=["telea"], dataset=ds)
    for metrics in result["results"].values():
        assert 0 < metrics["ipd"] < 2
    assert "layers conv_2" in result["protocol"]["ipd"] and "ipd" in format_table(result)
    quiet = evaluate_inpainting(tmp_path / "run", masks="thick", n=6, methods=["telea"], dataset=ds, perceptual=False)
    assert all("ipd" not in m for m in quiet["results"].values()) and "ipd" not in quiet["protocol"]


@needs_weights
def test_the_baselines_distances_are_cached_and_the_runs_are_not(tmp_path, monkeypatch):
    from ganforge.config import load_config
    from ganforge.data import ImageDataset
    from ganforge.inpaint.compare import evaluate_inpainting
    from ganforge.train.trainer import Trainer

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    images = _photos(6, 32, seed=3)
    folder = tmp_path / "photos"
    folder.mkdir()
    for k, im in enumerate(images):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f"{k}.png")
    cfg = load_config(None, [f"out_dir={tmp_path}", "task=inpaint", "model.arch=inpaint", "data.image_size=32",
                             "data.channels=3", "model.g_width=4", "model.d_width=4", "model.res_blocks=1",
                             "train.batch_size=2", "train.steps=1", "train.sample_every=1", "train.ckpt_every=1",
                             "train.sample_grid=3", "train.device=cpu", "train.precision=fp32",
                             "inpaint.masks=thick"])
    Trainer(cfg, tmp_path / "run", dataset=ImageDataset(images, None, 0, "fields")).train()
    computed = []
    real = PerceptualDistance.distances
    monkeypatch.setattr(PerceptualDistance, "distances",
                        lambda self, ref, others: computed.append(sorted(others)) or real(self, ref, others))

    def run(**kw):
        return evaluate_inpainting(tmp_path / "run", masks="thick", n=6, methods=["telea", "navier-stokes"],
                                   dataset=str(folder), **kw)["results"]
    first, second = run(), run()
    assert computed == [["ganforge", "navier-stokes", "telea"], ["ganforge"]]  # the second run reads the baselines' values
    assert {m: r["ipd"] for m, r in first.items()} == {m: r["ipd"] for m, r in second.items()}
    other = run(seed=1)  # other masks: another key, computed afresh
    assert computed[-1] == ["ganforge", "navier-stokes", "telea"] and other["telea"]["ipd"] != first["telea"]["ipd"]
    run(fid_cache=False)
    assert computed[-1] == ["ganforge", "navier-stokes", "telea"]
