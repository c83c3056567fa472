"""Shuffled mini-batches from an in-memory dataset.

A ``torch.utils.data.DataLoader`` spends most of its time on per-item Python calls and
collation; for datasets that fit in memory one gather per batch on the target device
is much faster, and the state needed for an exact resume is two integers.
"""

from __future__ import annotations

import torch

from ganforge.data.images import ImageDataset
from ganforge.errors import CheckpointError, DataError

__all__ = ["InMemoryBatcher", "batcher_for"]


class InMemoryBatcher:
    """Infinite shuffled batches from an in-memory ImageDataset, without per-item Python work.

    Every epoch visits each image once, in the order
    ``torch.randperm(N, generator=torch.Generator().manual_seed(seed + epoch))``; so the
    position in the stream is fully described by ``(epoch, index)`` and
    :meth:`state_dict` / :meth:`load_state_dict` give an exact continuation.

    Args:
        dataset: images ``(N, C, H, W)`` uint8; copied to ``device`` once.
        batch_size: images per batch, at most ``N``.
        seed: base seed of the per-epoch permutations.
        device: where batches are produced.
        drop_last: skip the incomplete batch at the end of an epoch (so every batch has
            exactly ``batch_size`` images); otherwise the last batch of an epoch is smaller.
        shard: ``(rank, world_size)`` for data-parallel training: ``batch_size`` is the
            global batch and this process yields only rows ``[rank * b, (rank + 1) * b)``
            of it, ``b = batch_size // world_size``. The stream position is global, so
            every rank's state is the same and any rank's state resumes all of them.

    Yields:
        ``(images, labels)``: images float32 ``(B, C, H, W)`` in ``[-1, 1]`` on ``device``
        (uint8 ``v`` maps to ``v / 127.5 - 1``), labels int64 ``(B,)`` on ``device``, or
        None for an unlabelled dataset.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        seed: int,
        device: torch.device | str = "cpu",
        drop_last: bool = True,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        n = len(dataset)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if n == 0:
            raise DataError(dataset.name, "dataset is empty")
        if batch_size > n:
            raise DataError(dataset.name, f"batch_size {batch_size} is larger than the dataset ({n} images)")
        rank, world = shard
        if world > 1 and (batch_size % world or not drop_last):
            raise ValueError(f"a sharded batch needs drop_last and batch_size divisible by {world}, "
                             f"got {batch_size}")
        self._rows = slice(rank * (batch_size // world), (rank + 1) * (batch_size // world)) if world > 1 else None
        self.device = torch.device(device)
        self.images = dataset.images.to(self.device)
        self.labels = None if dataset.labels is None else dataset.labels.to(self.device)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self._n = n
        self._seed = int(seed)
        self._epoch = 0
        self._index = 0
        self._perm: torch.Tensor | None = None

    @property
    def epoch(self) -> int:
        """Epoch of the most recent batch (0-based)."""
        return self._epoch

    @property
    def batches_per_epoch(self) -> int:
        if self.drop_last:
            return self._n // self.batch_size
        return -(-self._n // self.batch_size)

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self._seed + epoch)
        return torch.randperm(self._n, generator=gen).to(self.device)

    def __iter__(self) -> InMemoryBatcher:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Roll over lazily, when a batch is requested, so that a saved state at the end
        # of an epoch and its resumed copy take the same path.
        need = self.batch_size if self.drop_last else 1
        if self._index + need > self._n:
            self._epoch += 1
            self._index = 0
            self._perm = None
        if self._perm is None:
            self._perm = self._permutation(self._epoch)
        idx = self._perm[self._index : self._index + self.batch_size]
        self._index += idx.numel()
        if self._rows is not None:
            idx = idx[self._rows]  # gather and convert this rank's rows only
        images = self.images.index_select(0, idx).float().div_(127.5).sub_(1.0)
        labels = None if self.labels is None else self.labels.index_select(0, idx)
        return images, labels

    def state_dict(self) -> dict:
        """``{"epoch", "index", "seed"}``: JSON-able position of the stream."""
        return {"epoch": self._epoch, "index": self._index, "seed": self._seed}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where the batcher that produced ``state`` was."""
        try:
            epoch, index, seed = (state[k] for k in ("epoch", "index", "seed"))
        except (KeyError, TypeError):
            raise CheckpointError("batcher state", f"expected a dict with epoch, index and seed, got {state!r}") from None
        for key, value in (("epoch", epoch), ("index", index), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise CheckpointError("batcher state", f"{key} must be an integer, got {value!r}")
        if epoch < 0 or not 0 <= index <= self._n:
            raise CheckpointError("batcher state", f"epoch {epoch}, index {index} out of range for {self._n} images")
        self._epoch, self._index, self._seed = epoch, index, seed
        self._perm = None


def batcher_for(cfg, dataset, size: int, device: torch.device | str = "cpu", shard: tuple[int, int] = (0, 1)):
    """The training batcher of a run: a :class:`~ganforge.data.crops.CropBatcher` of ``size`` px crops
    for a photo cache (``data.crops``), else an :class:`InMemoryBatcher` over ``dataset``."""
    from ganforge.data.crops import CropBatcher, PhotoCache

    t = cfg.train
    if isinstance(dataset, PhotoCache):
        return CropBatcher(dataset, t.batch_size, size, t.seed, scale=tuple(cfg.data.crop_scale),
                           flip=cfg.data.crop_flip, device=device, shard=shard)
    return InMemoryBatcher(dataset, t.batch_size, seed=t.seed, device=device, shard=shard)
