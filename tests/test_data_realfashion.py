"""The real Fashion-MNIST files as installed by Debian's dataset-fashion-mnist package."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganforge.data import load_dataset, sources

pytestmark = pytest.mark.realdata

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FILES = [f for split in ("train", "test") for f in sources.DATASETS["fashion-mnist"].splits[split]]


@pytest.fixture(autouse=True)
def _need_files(monkeypatch):
    if not all((DEBIAN / f.name).is_file() for f in FILES):
        pytest.skip(f"Fashion-MNIST not installed in {DEBIAN} (apt-get install dataset-fashion-mnist)")
    monkeypatch.delenv("GANFORGE_DATA", raising=False)


@pytest.mark.parametrize("f", FILES, ids=lambda f: f.name)
def test_checksums(f):
    assert sources.file_matches(DEBIAN / f.name, f.checksums)


def test_load_train_and_test():
    train = load_dataset("fashion-mnist", split="train", download=False)
    test = load_dataset("fashion-mnist", split="test", download=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    for ds in (train, test):
        assert ds.labels.dtype == torch.int64 and ds.num_classes == 10
        assert torch.bincount(ds.labels, minlength=10).tolist() == [len(ds) // 10] * 10  # balanced classes
    assert train.class_names[9] == "Ankle boot"
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
