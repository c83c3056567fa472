"""Data-parallel training over several processes, as launched by ``torchrun``.

Run the usual command under torchrun; nothing else changes::

    torchrun --standalone --nproc_per_node=2 -m ganforge train -c configs/dcgan-fashion-mnist.yaml

When ``WORLD_SIZE > 1`` the trainer:

* initialises the process group (NCCL on CUDA, one GPU per process chosen by
  ``LOCAL_RANK``; Gloo on CPU);
* wraps G and D in :class:`~torch.nn.parallel.DistributedDataParallel`, so
  gradients are averaged over processes before every optimizer step (the
  models start identical: same seed, and DDP broadcasts rank 0's weights);
* splits every batch: ``train.batch_size`` is the *global* batch, each rank
  trains on its own slice of the same shuffled global batch
  (``InMemoryBatcher(shard=(rank, world_size))``), so a run sees the same
  images per step at any process count;
* draws different noise on each rank (the task's generator is seeded per rank);
* lets only rank 0 write the run directory (config, metrics, samples,
  checkpoints). Checkpoints hold the unwrapped modules, so a run trained on
  several processes resumes or samples in one, and vice versa.

BatchNorm statistics stay per process unless ``train.sync_bn`` is set (CUDA
only: :class:`~torch.nn.SyncBatchNorm` has no CPU kernels).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ganforge.errors import ConfigError

log = logging.getLogger(__name__)

# Rank r > 0 offsets its seeds by r times this (a prime), so streams do not overlap.
RANK_SEED_STRIDE = 1_000_003


@dataclass
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0, or the only process)."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj):
        """Rank 0's value of ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def seed_offset(self) -> int:
        return self.rank * RANK_SEED_STRIDE

    def local_batch(self, global_batch: int) -> int:
        """Images per rank and step; ``global_batch`` must split evenly."""
        if global_batch % self.world_size:
            raise ConfigError("train.batch_size", f"{global_batch} does not split over {self.world_size} "
                              "processes; use a multiple of the process count")
        return global_batch // self.world_size

    def wrap(self, module: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
        """DDP around ``module`` (already on ``device``); optional SyncBatchNorm (CUDA only)."""
        if not self.enabled:
            return module
        if sync_bn:
            if device.type != "cuda":
                log.warning("train.sync_bn needs CUDA (SyncBatchNorm has no CPU kernels); using per-process BatchNorm")
            else:
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if not any(p.requires_grad for p in module.parameters()):
            return module
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def launched_world_size() -> int:
    """How many processes torchrun started for this run (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device_name: str = "auto") -> tuple[DistContext, torch.device | None]:
    """Join the process group torchrun describes in the environment, if any.

    Returns the context and, for a distributed run, this process's device
    (``cuda:LOCAL_RANK`` or ``cpu``); for a single process the device is None
    (the caller resolves ``train.device`` as usual).
    """
    world = launched_world_size()
    if world <= 1:
        return DistContext(), None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError("train.device", "CUDA was requested but no CUDA device is available")
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
    return DistContext(rank, world, local_rank, backend), device


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers (so saved names carry no prefixes)."""
    module = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
    return getattr(module, "_orig_mod", module)


def shutdown(wait_for_peers: bool = False) -> None:
    """Leave the process group (at the end of a run; a no-op without one).

    ``wait_for_peers``: meet every rank at a barrier first. Gloo can abort a process
    ("terminate called without an active exception") when it tears its connections
    down while a peer is still using them, so a run that ended normally waits for the
    others; after an error on one rank the others may never arrive, so it does not.
    """
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int) -> None:
    """End a finished torchrun process now, without Python's interpreter teardown.

    With torch 2.13 on Gloo, a process that trained with DistributedDataParallel
    sometimes aborts during interpreter teardown, after the process group has been
    left ("terminate called without an active exception", SIGABRT), which makes
    torchrun report a failed run whose work is complete. Everything is written and
    flushed by then, so the process ends here instead.
    """
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
