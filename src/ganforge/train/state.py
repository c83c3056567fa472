"""Training state beyond the weights: counters and random streams, to and from checkpoints.

A checkpoint (:mod:`ganforge.checkpoint`) must hold everything needed to
continue bit-identically: weights (G, D, EMA), both optimizers, the data
position, the counters of :class:`Counters` and every random stream of every
process (:class:`RandomStreams`): Python's, NumPy's, torch's global generator
(dropout), the task's generator (noise, labels, masks, augmentation) and CUDA's.
:func:`save_state` writes them; :func:`load_state` puts them back.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganforge import checkpoint as ckpt
from ganforge.errors import CheckpointError
from ganforge.tasks.draws import Draws
from ganforge.train.distributed import DistContext
from ganforge.train.runlog import Stopwatch

log = logging.getLogger(__name__)

# Offsets of the seeds derived from train.seed, so the streams do not coincide.
TASK_SEED_OFFSET = 1


@dataclass
class Counters:
    """Where a run stands. ``bad_in_a_row`` (consecutive steps with a skipped update) is not saved."""

    step: int = 0  # completed generator steps
    images_seen: int = 0  # real images shown to D, all processes together
    skipped_steps: int = 0  # updates skipped because a loss or gradient was not finite
    rollbacks: int = 0
    bad_in_a_row: int = 0
    clock: Stopwatch = field(default_factory=Stopwatch)  # train_seconds

    def count(self, skipped: int, images: int) -> None:
        """Account for one completed step."""
        self.step += 1
        self.images_seen += images
        self.skipped_steps += skipped
        self.bad_in_a_row = self.bad_in_a_row + 1 if skipped else 0


class RandomStreams:
    """Every random stream of this process, seeded from ``train.seed`` and this process's rank.

    Rank r > 0 offsets its torch and task seeds (distinct dropout masks and noise per
    rank); model initialisation happens before that, with the same seed on every rank.
    """

    def __init__(self, seed: int, device: torch.device, dist: DistContext):
        self.seed, self.device, self.dist = seed, device, dist
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self.draws = Draws(torch.Generator(device=device).manual_seed(seed + TASK_SEED_OFFSET + dist.seed_offset()))

    def after_model_init(self) -> None:
        """Give each rank its own global torch stream (dropout) once the models exist."""
        if self.dist.enabled:
            torch.manual_seed(self.seed + self.dist.seed_offset())

    def rank_streams(self) -> dict[str, torch.Tensor]:
        """This process's streams that differ between ranks."""
        streams = {"torch": torch.get_rng_state(), "task": self.draws.get_state()}
        if self.device.type == "cuda":
            streams["cuda"] = torch.cuda.get_rng_state(self.device)
        return streams

    def to_checkpoint(self, all_ranks: list[dict] | None) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors (``rng.*``) and JSON fields of every stream; ``all_ranks`` under torchrun."""
        tensors = {"rng.torch": torch.get_rng_state(), "rng.task": self.draws.get_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        for rank, streams in enumerate(all_ranks or []):
            if rank > 0:
                tensors.update({f"rng.rank{rank}.{k}": v.cpu() for k, v in streams.items()})
        np_state = np.random.get_state()
        fields = {"rng_python": _jsonable(random.getstate()),
                  "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
        return tensors, fields

    def from_checkpoint(self, c: ckpt.Checkpoint, step: int) -> None:
        """Restore rank 0's streams (and this rank's own, when saved with this process count)."""
        t, s = c.train_tensors, c.state
        torch.set_rng_state(t["rng.torch"])
        self.draws.set_state(t["rng.task"])
        if torch.cuda.is_available():
            states = [t[k] for k in sorted(t) if k.startswith("rng.cuda.")]
            if states:
                torch.cuda.set_rng_state_all(states[: torch.cuda.device_count()])
        random.setstate(_tupled(s["rng_python"]))
        np_state = s["rng_numpy"]
        np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
        if self.dist.rank > 0:
            self._restore_rank(c, step)

    def _restore_rank(self, c: ckpt.Checkpoint, step: int) -> None:
        prefix = f"rng.rank{self.dist.rank}."
        t = c.train_tensors
        if c.state.get("world_size") == self.dist.world_size and prefix + "torch" in t:
            torch.set_rng_state(t[prefix + "torch"])
            self.draws.set_state(t[prefix + "task"])
            if self.device.type == "cuda" and prefix + "cuda" in t:
                torch.cuda.set_rng_state(t[prefix + "cuda"], self.device)
            return
        # Saved with another process count (or without per-rank streams): fresh streams, distinct
        # per rank and per step. Training continues correctly, though not bit-identically.
        log.info("rank %d: no saved random streams for this process count; reseeding", self.dist.rank)
        offset = self.dist.seed_offset() + 7 * step
        self.draws.manual_seed(self.seed + TASK_SEED_OFFSET + offset)
        torch.manual_seed(self.seed + offset)


def save_state(ckpt_root: Path, counters: Counters, modules: dict[str, nn.Module],
               optimizers: dict[str, torch.optim.Optimizer], batcher, precision, streams: RandomStreams,
               all_rank_streams: list[dict] | None, world_size: int, keep_last: int) -> Path:
    """Write a checkpoint of everything needed to continue bit-identically; returns its directory."""
    tensors: dict[str, torch.Tensor] = {}
    optim_meta = {}
    for name, opt in optimizers.items():
        t, meta = ckpt.optimizer_to_flat(name, opt)
        tensors.update(t)
        optim_meta[name] = meta
    rng_tensors, rng_fields = streams.to_checkpoint(all_rank_streams)
    tensors.update(rng_tensors)
    state = {
        "world_size": world_size,
        "images_seen": counters.images_seen,
        "skipped_steps": counters.skipped_steps,
        "rollbacks": counters.rollbacks,
        "train_seconds": counters.clock.total,
        "batcher": batcher.state_dict(),
        "optim": optim_meta,
        "precision": precision.state_dict(),
        **rng_fields,
    }
    return ckpt.save_checkpoint(ckpt_root, counters.step, modules, tensors, state, keep_last=keep_last)


def load_state(c: ckpt.Checkpoint, counters: Counters, modules: dict[str, nn.Module],
               optimizers: dict[str, torch.optim.Optimizer], batcher, precision, streams: RandomStreams) -> None:
    """Restore weights, optimizers, counters, data position and random streams from ``c``.

    ``counters.rollbacks`` only grows (a rollback loads an older checkpoint).
    """
    for name, module in modules.items():
        if name not in c.weights:
            raise CheckpointError(c.path, f"has no weights for {name}")
        ckpt.load_module_state(module, c.weights[name], c.path / "weights.safetensors")
    try:
        for name, opt in optimizers.items():
            saved = ckpt.optimizer_from_flat(name, c.train_tensors, c.state["optim"][name])
            _check_moments(c, name, opt, saved)
            opt.load_state_dict(saved)
        s = c.state
        counters.step, counters.images_seen = c.step, int(s["images_seen"])
        counters.skipped_steps = int(s.get("skipped_steps", 0))
        counters.rollbacks = max(counters.rollbacks, int(s.get("rollbacks", 0)))
        counters.clock = Stopwatch(float(s.get("train_seconds", 0.0)))
        counters.bad_in_a_row = 0
        batcher.load_state_dict(s["batcher"])
        precision.load_state_dict(s.get("precision", {}))
        streams.from_checkpoint(c, c.step)
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(c.path, f"training state does not match this run: {exc}") from None


def _check_moments(c: ckpt.Checkpoint, name: str, opt: torch.optim.Optimizer, saved: dict) -> None:
    """Every saved per-parameter tensor (Adam's moments) must have its parameter's shape."""
    params = [p for group in opt.param_groups for p in group["params"]]
    for idx, entry in saved["state"].items():
        if not 0 <= idx < len(params):
            raise CheckpointError(c.path / "train.safetensors", f"{name} has state for parameter {idx}, "
                                  f"but this run's optimizer has {len(params)} parameters")
        for key, value in entry.items():
            if torch.is_tensor(value) and value.ndim and tuple(value.shape) != tuple(params[idx].shape):
                raise CheckpointError(c.path / "train.safetensors", f"{name}.{idx}.{key} has shape "
                                      f"{tuple(value.shape)}, its parameter {tuple(params[idx].shape)}")


def _jsonable(obj):
    if isinstance(obj, tuple):
        return {"__tuple__": [_jsonable(o) for o in obj]}
    return obj


def _tupled(obj):
    if isinstance(obj, dict) and "__tuple__" in obj:
        return tuple(_tupled(o) for o in obj["__tuple__"])
    return obj
