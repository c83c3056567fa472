"""Shared fixtures: tiny synthetic datasets and tiny configs, so tests run in seconds on 2 cores."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ganforge.config import load_config
from ganforge.data import ImageDataset


@pytest.fixture(autouse=True, scope="session")
def _private_stats_cache(tmp_path_factory):
    """Statistics the tests compute go to a temporary cache, never the user's.

    The trained domain classifiers stay shared (a link to the user's folder): training
    one takes minutes, and it is the same network whichever test asks first.
    """
    import os

    from ganforge.metrics.cache import CACHE_ENV, cache_root

    user = cache_root()
    root = tmp_path_factory.mktemp("ganforge-cache")
    (user / "classifiers").mkdir(parents=True, exist_ok=True)
    (root / "classifiers").symlink_to(user / "classifiers", target_is_directory=True)
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(root)
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before

# Tiny models are faster on one thread, and results then do not depend on the core count.
torch.set_num_threads(1)


def tiny_dataset(n: int = 96, size: int = 28, channels: int = 1, classes: int = 10, seed: int = 0) -> ImageDataset:
    """Random blobs with labels: enough structure for shapes and losses, nothing more."""
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, classes, n)).long() if classes else None
    return ImageDataset(images=images, labels=labels, num_classes=classes, name="tiny")


def write_gray_npz(path, n: int = 64, size: int = 28, labels: bool = False, seed: int = 0):
    """Save ``n`` random uint8 images ``(n, size, size)`` (and labels 0-9) as an .npz data set; returns ``path``."""
    rng = np.random.default_rng(seed)
    arrays = {"images": rng.integers(0, 256, (n, size, size), dtype=np.uint8)}
    if labels:
        arrays["labels"] = rng.integers(0, 10, n)
    np.savez(path, **arrays)
    return path


def write_png_folder(path, seed: int, n: int = 12, shift: float = 0, size: int = 28):
    """A new folder of ``n`` gray ``size``x``size`` PNGs of noise around 128 + ``shift``; returns ``path``."""
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = np.clip(rng.normal(128 + shift, 40, (size, size)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(path / f"{i:03d}.png")
    return path


def load_script(name: str):
    """Import ``benchmarks/<name>.py`` (the benchmark scripts are not a package) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pid_of_a_finished_process() -> int:
    """The PID of a process that has ended (for leftovers of a killed writer)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tiny_config(tmp_path, *overrides: str):
    """A small DCGAN config writing into tmp_path."""
    base = [f"out_dir={tmp_path}", "model.g_width=8", "model.d_width=8", "model.z_dim=16",
            "train.batch_size=16", "train.steps=6", "train.log_every=2", "train.sample_every=3",
            "train.ckpt_every=3", "train.sample_grid=16"]
    return load_config(None, base + list(overrides))


def full_and_interrupted(cfg, tmp_path, dataset, stop_after: int):
    """Train ``cfg`` uninterrupted into tmp_path/full and up to ``stop_after`` steps into tmp_path/part.

    Returns the finished trainer; resume ``tmp_path / "part"`` and compare with
    :func:`assert_same_weights`.
    """
    from ganforge.train.trainer import Trainer

    full = Trainer(cfg, tmp_path / "full", dataset=dataset)
    full.train()
    Trainer(cfg, tmp_path / "part", dataset=dataset).train(stop_after=stop_after)
    return full


def assert_same_weights(a, b) -> None:
    """Trainers ``a`` and ``b`` hold bit-identical modules (G, D, EMA): same names, equal tensors."""
    sa = {f"{n}.{k}": v for n, m in a.modules().items() for k, v in m.state_dict().items()}
    sb = {f"{n}.{k}": v for n, m in b.modules().items() for k, v in m.state_dict().items()}
    assert sa.keys() == sb.keys()
    for k, v in sa.items():
        assert torch.equal(v, sb[k]), k


@pytest.fixture
def tiny_ds():
    return tiny_dataset()


class PooledFeatures(torch.nn.Module):
    """Stand-in for the Inception extractor (same interface): 4x4 average-pooled pixels.

    The real network is tested in test_metrics_inception.py; here only the plumbing
    (generation, caching, logging, best checkpoint, CLI) is under test, and 299px
    Inception passes would dominate the suite's time on a CPU.
    """

    protocol = "test stand-in: 4x4 average-pooled pixels"

    def __init__(self, weights=None, device="cpu", precision="fp32", batch_size=64, channels_last=True):
        super().__init__()
        self.batch_size, self.channels_last, self.cudnn_benchmark = batch_size, channels_last, True

    def forward(self, images):
        x = images.float()
        x = x.mean(1, keepdim=True) if x.shape[1] == 3 else x
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1).double() / 255

    def iter_features(self, images):
        for i in range(0, images.shape[0], self.batch_size):
            yield self(images[i:i + self.batch_size])


@pytest.fixture
def stand_in_extractor(monkeypatch):
    import ganforge.metrics.evaluator as evaluate

    monkeypatch.setattr(evaluate, "InceptionFeatures", PooledFeatures)
    yield
    # Periodic evaluation keeps extractors and evaluators per process; drop the stand-ins.
    evaluate.clear_evaluators()
    evaluate.clear_shared_extractors()


@pytest.fixture
def one_second_steps(monkeypatch):
    """Every ``Trainer.train_step`` takes exactly one second of a fake clock.

    Returns ``clock(start=0.0)``, a Stopwatch on that clock, to put in ``trainer.counters.clock``.
    """
    from ganforge.train.runlog import Stopwatch
    from ganforge.train.trainer import Trainer

    now = [0.0]
    real_step = Trainer.train_step

    def step_taking_one_second(self):
        now[0] += 1.0
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_taking_one_second)
    return lambda start=0.0: Stopwatch(start, clock=lambda: now[0])
