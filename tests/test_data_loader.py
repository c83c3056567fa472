"""InMemoryBatcher: epochs cover the data exactly once, determinism, exact resume, value range."""

from __future__ import annotations

import json

import pytest
import torch

from ganforge.data import ImageDataset, InMemoryBatcher, load_dataset
from ganforge.errors import CheckpointError, ConfigError, DataError


def _indexed(n=10, channels=1):
    """Image i is filled with value i, so a batch reveals which samples it holds."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, channels, 2, 2).contiguous()
    return ImageDataset(images, torch.arange(n) % 3, 3, "indexed")


def _ids(x):
    return ((x[:, 0, 0, 0] + 1) * 127.5).round().long().tolist()


def test_every_sample_once_per_epoch():
    b = InMemoryBatcher(_indexed(10), batch_size=3, seed=1)
    assert b.batches_per_epoch == 3
    for epoch in range(3):
        seen = [i for _ in range(3) for i in _ids(next(b)[0])]
        assert len(seen) == 9 and len(set(seen)) == 9 and b.epoch == epoch
    # Different epochs use different orders.
    b2 = InMemoryBatcher(_indexed(10), batch_size=10, seed=1)
    assert _ids(next(b2)[0]) != _ids(next(b2)[0])


def test_permutation_formula_and_labels():
    b = InMemoryBatcher(_indexed(10), batch_size=4, seed=5)
    x, y = next(b)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(5))
    assert _ids(x) == perm[:4].tolist()
    assert y.dtype == torch.int64 and y.tolist() == (perm[:4] % 3).tolist()


def test_no_drop_last_gives_short_final_batch():
    b = InMemoryBatcher(_indexed(10), batch_size=4, seed=0, drop_last=False)
    sizes = [len(next(b)[0]) for _ in range(4)]
    assert sizes == [4, 4, 2, 4] and b.batches_per_epoch == 3


def test_deterministic_given_seed():
    a, b, c = (InMemoryBatcher(_indexed(10), 4, seed=s) for s in (7, 7, 8))
    sa, sb, sc = ([_ids(next(it)[0]) for _ in range(6)] for it in (a, b, c))
    assert sa == sb and sa != sc


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 5])
def test_resume_is_identical(steps):
    ref = InMemoryBatcher(_indexed(9), 3, seed=3)
    for _ in range(steps):
        next(ref)
    state = json.loads(json.dumps(ref.state_dict()))
    assert set(state) == {"epoch", "index", "seed"}
    fresh = InMemoryBatcher(_indexed(9), 3, seed=999)  # the seed comes from the state
    fresh.load_state_dict(state)
    for _ in range(7):
        (xa, ya), (xb, yb) = next(ref), next(fresh)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_range_dtype_and_channels():
    ds = ImageDataset(torch.tensor([0, 255, 128], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 4, 4), None, 0, "u")
    x, y = next(InMemoryBatcher(ds, 3, seed=0))
    assert y is None and x.dtype == torch.float32 and x.shape == (3, 3, 4, 4)
    assert sorted(x[:, 0, 0, 0].tolist()) == [-1.0, pytest.approx(128 / 127.5 - 1, abs=1e-6), 1.0]


def test_iterates_like_an_iterator():
    b = InMemoryBatcher(_indexed(4), 2, seed=0)
    assert iter(b) is b
    assert len([x for x, _ in zip(b, range(5))]) == 5


def test_bad_arguments():
    with pytest.raises(DataError, match="indexed: batch_size 11 is larger than the dataset"):
        InMemoryBatcher(_indexed(10), 11, seed=0)
    with pytest.raises(ValueError, match="positive"):
        InMemoryBatcher(_indexed(10), 0, seed=0)
    b = InMemoryBatcher(_indexed(10), 2, seed=0)
    with pytest.raises(CheckpointError, match="out of range"):
        b.load_state_dict({"epoch": 0, "index": 11, "seed": 0})
    with pytest.raises(CheckpointError, match="epoch, index and seed"):
        b.load_state_dict({"epoch": 0})


def test_dataset_conversion_helpers(tmp_path):
    import numpy as np

    rgb = np.zeros((2, 8, 4, 3), np.uint8)
    rgb[..., 1] = 255
    np.savez(tmp_path / "g.npz", x=rgb)
    ds = load_dataset(str(tmp_path / "g.npz"), image_size=2, channels=1)
    assert ds.images.shape == (2, 1, 2, 2) and int(ds.images.max()) == int(ds.images.min()) == 150  # 0.587 * 255
    with pytest.raises(ConfigError, match="channels"):
        load_dataset(str(tmp_path / "g.npz"), channels=2)
    with pytest.raises(ConfigError, match="split"):
        load_dataset(str(tmp_path / "g.npz"), split="val")
    with pytest.raises(DataError, match="not a known dataset name"):
        load_dataset(str(tmp_path / "missing"))


def test_shards_split_each_global_batch_between_ranks():
    full = InMemoryBatcher(_indexed(10), 4, seed=2)
    ranks = [InMemoryBatcher(_indexed(10), 4, seed=2, shard=(r, 2)) for r in (0, 1)]
    for _ in range(5):  # across an epoch boundary
        x, y = next(full)
        parts = [next(b) for b in ranks]
        assert _ids(parts[0][0]) + _ids(parts[1][0]) == _ids(x)
        assert parts[0][1].tolist() + parts[1][1].tolist() == y.tolist()
    assert ranks[0].state_dict() == ranks[1].state_dict() == full.state_dict()
    with pytest.raises(ValueError):
        InMemoryBatcher(_indexed(10), 3, seed=0, shard=(0, 2))
