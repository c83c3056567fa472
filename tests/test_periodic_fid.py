"""Periodic FID during training: the set-up is done once per process, and the numbers are those
of ``compute_metrics`` (what ``ganforge eval`` runs) for the same generator."""

import json

import numpy as np
import pytest
import torch

import ganforge.metrics.inception as inception
import ganforge.metrics.evaluator as pipeline
from conftest import PooledFeatures, tiny_config, write_gray_npz
from ganforge.errors import WeightsError
from ganforge.metrics.compute import compute_metrics
from ganforge.metrics.evaluator import Evaluator, clear_evaluators, shared_evaluator
from ganforge.sampling import generate
from ganforge.train.periodic_eval import evaluate_during_training
from ganforge.train.trainer import Trainer


@pytest.fixture
def clean_caches():
    clear_evaluators()
    pipeline.clear_shared_extractors()
    yield
    clear_evaluators()
    pipeline.clear_shared_extractors()


@pytest.fixture
def data_npz(tmp_path):
    return write_gray_npz(tmp_path / "d.npz")


class CountingFeatures(PooledFeatures):
    built = 0

    def __init__(self, *args, **kwargs):
        super().__init__()
        type(self).built += 1


def test_two_periodic_evaluations_share_one_extractor_and_one_real_setup(tmp_path, data_npz, monkeypatch,
                                                                         clean_caches):
    CountingFeatures.built = 0
    monkeypatch.setattr(pipeline, "InceptionFeatures", CountingFeatures)
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    calls = {"real_images": 0, "real_stats": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(pipeline, "real_images_for", counted("real_images", pipeline.real_images_for))
    monkeypatch.setattr(pipeline, "real_inception_stats", counted("real_stats", pipeline.real_inception_stats))
    cfg = tiny_config(tmp_path, f"data.dataset={data_npz}", "data.split=all", "train.steps=4",
                      "train.eval_every=2", "train.eval_n=16", "train.ema_decay=0.5")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.train()
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert CountingFeatures.built == 1
    # each record holds its own cost; the one-time set-up is reported once, by the first
    assert all(r["eval_seconds"] > 0 for r in evals)
    assert "eval_setup_seconds" in evals[0] and "eval_setup_seconds" not in evals[1]
    assert calls == {"real_images": 1, "real_stats": 1}

    # The same generator through compute_metrics (the `ganforge eval` path): the same number.
    again = evaluate_during_training(trainer)
    assert CountingFeatures.built == 1 and calls["real_stats"] == 1
    G = trainer.ema.model
    # Generated in training's batches of 256: another batch size may change a convolution's last bit.
    stream = generate(G, cfg, 16, seed=cfg.train.seed, device="cpu", batch_size=256)
    direct = compute_metrics(stream, str(data_npz), "all", ("fid",), 16, image_size=cfg.data.image_size,
                             channels=cfg.data.channels, root=cfg.data.root)
    assert again["fid16_all"] == direct["fid16_all"] == evals[-1]["fid16_all"]
    before = calls["real_stats"]  # compute_metrics is the same pipeline: it set up its own real side
    shared = shared_evaluator(str(data_npz), "all", 16, image_size=cfg.data.image_size,
                                channels=cfg.data.channels, root=cfg.data.root, device=torch.device("cpu"),
                                batch_size=64)
    assert shared(generate(G, cfg, 16, seed=cfg.train.seed))["protocol"] == direct["protocol"]
    assert calls["real_stats"] == before  # still the evaluator built by the first evaluation


def tiny_network():
    """A stand-in for the TorchScript file: (N, 3, 299, 299) -> (N, 12), deterministic weights."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 12)).eval()


def test_real_extractor_class_is_loaded_once_per_weights_device_and_precision(tmp_path, monkeypatch, clean_caches):
    try:
        inception.locate_inception_weights()
    except WeightsError:
        pytest.skip("Inception weights not installed")
    loads = []

    def fake_load(weights=None, device="cpu"):
        loads.append((str(weights), str(device)))
        return tiny_network()

    # InceptionFeatures itself (weights lookup, SHA-1, preprocessing) with a tiny network instead of 87 MB.
    monkeypatch.setattr(inception, "load_inception", fake_load)
    rng = np.random.default_rng(1)
    real = tmp_path / "real.npz"
    np.savez(real, images=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))
    fakes = torch.from_numpy(rng.integers(0, 256, (12, 1, 28, 28), dtype=np.uint8))
    kwargs = dict(device="cpu", batch_size=5, cache_dir=tmp_path / "stats")

    first = Evaluator(str(real), "all", 12, **kwargs)
    second = Evaluator(str(real), "all", 12, **kwargs)
    assert len(loads) == 1 and first.extractor is second.extractor
    r1 = first(iter([fakes[:7], fakes[7:]]))
    r2 = second(iter(fakes.split(5)))  # other batch boundaries, same images
    direct = compute_metrics(iter([fakes]), str(real), "all", ("fid",), 12, **kwargs)
    assert len(loads) == 2  # compute_metrics builds its own (one-shot use)
    assert r1["fid12_all"] == pytest.approx(direct["fid12_all"], rel=1e-9, abs=1e-9)
    assert r2["fid12_all"] == pytest.approx(direct["fid12_all"], rel=1e-9, abs=1e-9)
    assert r1["protocol"] == direct["protocol"] and r1["n_real"] == direct["n_real"] == 12
    # another precision is another extractor
    Evaluator(str(real), "all", 12, precision="bf16", **kwargs)
    assert len(loads) == 3


def test_fid_only_evaluation_keeps_no_raw_generated_features(tmp_path, data_npz, monkeypatch, stand_in_extractor):
    kept = []

    class Spy(pipeline.FeatureStats):
        def __init__(self, max_items=0, metadata=None):
            kept.append(max_items)
            super().__init__(max_items, metadata)

    monkeypatch.setattr(pipeline, "FeatureStats", Spy)
    real = torch.from_numpy(np.load(data_npz)["images"])[:, None]
    common = dict(n=16, use_cache=False)
    compute_metrics(lambda b: real[:b], str(data_npz), "all", ("fid",), **common)
    assert kept == [16, 0]  # real statistics (cache format: all rows), generated: none
    kept.clear()
    compute_metrics(lambda b: real[:b], str(data_npz), "all", ("fid", "kid"), **common)
    assert kept == [16, 16]


class ShapeRecordingFeatures(PooledFeatures):
    """The stand-in extractor, recording the batch shape of every forward pass."""

    shapes: list = []

    def forward(self, images):
        type(self).shapes.append(tuple(images.shape))
        return super().forward(images)


def test_warm_up_passes_the_evaluation_batch_shapes_during_set_up_and_changes_no_number(
        tmp_path, data_npz, monkeypatch, clean_caches):
    monkeypatch.setattr(pipeline, "InceptionFeatures", ShapeRecordingFeatures)
    kwargs = dict(device="cpu", batch_size=5, cache_dir=tmp_path / "stats")
    fakes = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (12, 1, 28, 28), dtype=np.uint8))
    cold = Evaluator(str(data_npz), "all", 12, **kwargs)  # CPU default: no warm-up
    ShapeRecordingFeatures.shapes = []
    warm = Evaluator(str(data_npz), "all", 12, warmup=True, **kwargs)
    # real statistics came from the cache: set-up ran the network only to warm it up,
    # twice per batch size an evaluation of 12 images in batches of 5 passes (5, 5, 2)
    assert ShapeRecordingFeatures.shapes == [(5, 1, 28, 28)] * 2 + [(2, 1, 28, 28)] * 2
    ShapeRecordingFeatures.shapes = []
    Evaluator(str(data_npz), "all", 12, **kwargs)
    assert ShapeRecordingFeatures.shapes == []
    assert warm(iter([fakes]))["fid12_all"] == cold(iter([fakes]))["fid12_all"]
    assert warm.calls == cold.calls == 1  # the warm-up is not an evaluation


def test_generator_warm_up_runs_one_evaluation_batch_and_leaves_the_random_streams_alone(tmp_path, data_npz):
    from ganforge.train.periodic_eval import CUDA_GENERATE_BATCH, _warm_up_generator

    cfg = tiny_config(tmp_path, f"data.dataset={data_npz}", "data.split=all", "train.eval_n=16",
                      "train.ema_decay=0.5")
    G = Trainer(cfg, tmp_path / "run").ema.model
    batches = []
    G.register_forward_hook(lambda module, args, out: batches.append(tuple(out.shape)))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert _warm_up_generator(G, cfg, torch.device("cpu")) > 0
    assert batches == [(min(CUDA_GENERATE_BATCH, 16), cfg.data.channels, cfg.data.image_size, cfg.data.image_size)]
    assert torch.equal(torch.rand(3), expected)  # generation draws from its own seeded stream
