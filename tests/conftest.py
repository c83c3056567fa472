"""Shared fixtures: tiny synthetic datasets and tiny configs, so tests run in seconds on 2 cores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganforge.config import load_config
from ganforge.data import ImageDataset

# Tiny models are faster on one thread, and results then do not depend on the core count.
torch.set_num_threads(1)


def tiny_dataset(n: int = 96, size: int = 28, channels: int = 1, classes: int = 10, seed: int = 0) -> ImageDataset:
    """Random blobs with labels: enough structure for shapes and losses, nothing more."""
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, classes, n)).long() if classes else None
    return ImageDataset(images=images, labels=labels, num_classes=classes, name="tiny")


def tiny_config(tmp_path, *overrides: str):
    """A small DCGAN config writing into tmp_path."""
    base = [f"out_dir={tmp_path}", "model.g_width=8", "model.d_width=8", "model.z_dim=16",
            "train.batch_size=16", "train.steps=6", "train.log_every=2", "train.sample_every=3",
            "train.ckpt_every=3", "train.sample_grid=16"]
    return load_config(None, base + list(overrides))


@pytest.fixture
def tiny_ds():
    return tiny_dataset()
