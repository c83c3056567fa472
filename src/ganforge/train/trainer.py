"""The training loop: ``n_dis`` discriminator steps, then one generator step, with Adam.

One :class:`Trainer` owns a run directory::

    RUN/config.yaml        the resolved config
    RUN/metrics.jsonl      one JSON object per logged step
    RUN/samples/*.png      fixed-noise sample grids
    RUN/checkpoints/       see :mod:`ganforge.checkpoint`

Models only ``forward``; the task computes losses; this module does the
updates, precision, EMA, logging, checkpoints and exact resume.

Execution paths (see BENCHMARKS.md for what each is worth). ``train.fast``
(default true) selects the fast path; ``train.fast=false`` with
``train.precision=fp32`` is the reference path, the plain loop of the papers:

* reference: fresh noise for each G pass, two D forwards per D step, Adam's
  per-tensor loop, a host-side finiteness check before each update;
* fast: bf16 autocast where the hardware has it (``precision: auto``), fused
  Adam, the task's fake reuse and single D forward (:mod:`ganforge.train.task`),
  a finiteness check done on the device (the fused optimizer skips a
  non-finite update itself, so an iteration reads values on the host once, for
  its logs), and on CUDA the whole iteration captured in a CUDA graph and
  replayed (``train.cuda_graphs``) plus cuDNN autotuning. ``train.compile``
  compiles the forward passes of G and D (D stays eager when a gradient
  penalty or R1 needs double backward). ``train.channels_last`` is separate.
"""

from __future__ import annotations

import logging
import random
import signal
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ganforge.config import RunConfig, dump_yaml
from ganforge.data import InMemoryBatcher, load_dataset
from ganforge.errors import CheckpointError, ConfigError, TrainingError
from ganforge.imageio import save_grid
from ganforge.models import build_models
from ganforge import checkpoint as ckpt
from ganforge.data.subset import select as select_subset
from ganforge.train import distributed, transfer
from ganforge.train.distributed import unwrap
from ganforge.train.ema import EMA
from ganforge.train.precision import Precision, resolve_device, resolve_precision
from ganforge.train.runlog import MetricsLog, Progress, Stopwatch
from ganforge.train.task import DrawTape, GenerationTask

log = logging.getLogger(__name__)

TaskFactory = Callable[[RunConfig, nn.Module, nn.Module, torch.device, torch.Generator], object]


def new_run_dir(cfg: RunConfig) -> Path:
    """``out_dir/name``, or ``name-1``, ``name-2``... when taken: a new run never overwrites an old one."""
    base = Path(cfg.out_dir) / cfg.name
    path, i = base, 0
    while path.exists():
        i += 1
        path = base.with_name(f"{cfg.name}-{i}")
    return path


def fixed_noise(cfg: RunConfig, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The run's fixed grid inputs, derived from the seed alone: z (n, z_dim), labels (n,) or None.

    Conditional runs get one row per class (labels repeat 0..K-1 down the columns).
    """
    gen = torch.Generator().manual_seed(cfg.train.seed + 7919)
    z = torch.randn(n, cfg.model.z_dim, generator=gen)
    k = cfg.model.num_classes
    y = torch.arange(n) // max(1, n // k) % k if k else None
    return z, y


def fast_paths(cfg: RunConfig, device: torch.device) -> dict[str, bool]:
    """Which switches of the fast path are on for ``cfg`` on ``device`` (before eligibility checks)."""
    t = cfg.train
    fast = getattr(t, "fast", True)
    return {
        "fast": fast,
        "fused_optim": fast and getattr(t, "fused_optim", True) and device.type in ("cpu", "cuda"),
        "cuda_graphs": fast and getattr(t, "cuda_graphs", True) and device.type == "cuda",
        "cudnn_benchmark": fast and getattr(t, "cudnn_benchmark", True) and device.type == "cuda",
    }


class Trainer:
    """Train one run. ``Trainer(cfg, run_dir).train()``; ``Trainer.resume(run_dir).train()``."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, task_factory: TaskFactory | None = None,
                 dataset=None):
        self.cfg = cfg
        self.dist, dist_device = distributed.init_from_env(cfg.train.device)
        self.run_dir = Path(self.dist.broadcast_object(str(run_dir)))  # rank 0 names the run
        self.device = dist_device or resolve_device(cfg.train.device)
        self.paths = fast_paths(cfg, self.device)
        self.precision = Precision(resolve_precision(cfg.train.precision, self.device, self.paths["fast"]),
                                   self.device)
        if self.paths["cudnn_benchmark"]:
            torch.backends.cudnn.benchmark = True  # fixed shapes: autotune each convolution once
        self._seed_everything(cfg.train.seed)
        # Inpainting with random crops loads larger images and crops inside the task.
        load_size = cfg.inpaint.load_size if cfg.model.arch == "inpaint" and cfg.inpaint.random_crop else 0
        self.dataset = dataset if dataset is not None else load_dataset(
            cfg.data.dataset, split=cfg.data.split, image_size=load_size or cfg.data.image_size,
            channels=cfg.data.channels, root=cfg.data.root, download=cfg.data.download)
        self.dataset = select_subset(self.dataset, cfg.data.classes, cfg.data.limit, cfg.data.subset_seed)
        if cfg.model.num_classes and self.dataset.labels is None:
            raise ConfigError("model.num_classes", f"{self.dataset.name} has no labels; set model.num_classes=0")
        if cfg.model.num_classes and self.dataset.num_classes > cfg.model.num_classes:
            raise ConfigError("model.num_classes", f"{self.dataset.name} has {self.dataset.num_classes} classes, "
                              f"more than model.num_classes={cfg.model.num_classes}")
        self.local_batch = self.dist.local_batch(cfg.train.batch_size)
        self.batcher = InMemoryBatcher(self.dataset, cfg.train.batch_size, seed=cfg.train.seed, device=self.device,
                                       shard=(self.dist.rank, self.dist.world_size))
        G, D = (m.to(self.device) for m in build_models(cfg))
        self.transfer = transfer.initialise(cfg, G, D, self.run_dir)  # pretrained weights, frozen blocks
        if self.dist.enabled:  # distinct dropout masks per rank; the weights are already initialised alike
            torch.manual_seed(cfg.train.seed + self.dist.seed_offset())
        if cfg.train.channels_last:
            G, D = (m.to(memory_format=torch.channels_last) for m in (G, D))
        self._g_params, self._d_params = list(G.parameters()), list(D.parameters())
        self.G, self.D = self._wrap(G, D)
        self.ema = EMA(G, cfg.train.ema_decay, cfg.train.ema_start) if cfg.train.ema_decay > 0 else None
        transfer.load_ema(self.ema, self.transfer)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.train.seed + 1 + self.dist.seed_offset())
        factory = task_factory or _default_task_factory(cfg)
        self.task = factory(cfg, self.G, self.D, self.device, self.gen)
        self._graph_failed = False
        if (cfg.train.precision == "auto" and self.device.type == "cuda" and self.precision.mode == "bf16"
                and not self._graph_eligible()):
            # Measured on an H100 (BENCHMARKS.md): outside a CUDA graph, bf16 autocast's extra cast
            # kernels cost more than its faster math saves for every preset, so eager runs stay fp32.
            self.precision = Precision("fp32", self.device)
        self._capturable = self.paths["cuda_graphs"] and self.paths["fused_optim"] and self._graph_eligible()
        self.opt_g = self._adam(transfer.param_groups(self.transfer, "G", G, cfg.optim.lr_g, cfg), cfg.optim.lr_g)
        self.opt_d = self._adam(transfer.param_groups(self.transfer, "D", D, cfg.optim.lr_d, cfg), cfg.optim.lr_d)
        self.step = 0
        self.images_seen = 0
        self.skipped_steps = 0
        self.bad_in_a_row = 0  # consecutive iterations with a skipped update
        self.rollbacks = 0
        self.clock = Stopwatch()  # train_seconds in metrics.jsonl and checkpoints
        self.monitor = CollapseMonitor()
        self._stop_requested = False
        self._graph: _GraphedIteration | None = None
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")

    # ----------------------------------------------------------------- set-up

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _wrap(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        """DDP and torch.compile wrappers, as configured."""
        cfg = self.cfg
        sync_bn = getattr(cfg.train, "sync_bn", False)
        G, D = self.dist.wrap(G, self.device, sync_bn), self.dist.wrap(D, self.device, sync_bn)
        if cfg.train.compile:
            G = torch.compile(G)
            # Double backward (gradient penalty, R1) is not supported through compiled graphs.
            if not (cfg.loss.name == "wgan-gp" or cfg.loss.r1_weight > 0):
                D = torch.compile(D)
        return G, D

    def _adam(self, params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
        o = self.cfg.optim
        opt = torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2))
        self._set_optimizer_impl(opt)
        return opt

    def _set_optimizer_impl(self, opt: torch.optim.Optimizer) -> None:
        """Fused / capturable flags as this run wants them (also after loading a state saved by another run)."""
        fused = self.paths["fused_optim"]
        for group in opt.param_groups:
            group["fused"] = fused or None
            group["capturable"] = self._capturable
            if fused:
                group["foreach"] = None
        on_device = fused or self._capturable
        for p, state in opt.state.items():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(p.device if on_device else "cpu", torch.float32)

    @classmethod
    def resume(cls, run_dir: str | Path, cfg: RunConfig | None = None, **kwargs) -> "Trainer":
        """Rebuild a run from its resolved config and newest valid checkpoint."""
        from ganforge.config import load_config

        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(run_dir, "not a run directory (no config.yaml)")
        cfg = cfg or load_config(run_dir / "config.yaml")
        trainer = cls(cfg, run_dir, **kwargs)
        if trainer.dist.is_main:
            ckpt.clean_stale(run_dir / "checkpoints")
        trainer.dist.barrier()
        latest = ckpt.find_latest(run_dir)
        if latest is None:
            raise CheckpointError(run_dir / "checkpoints", "no valid checkpoint to resume from")
        trainer.load_state(latest)
        if trainer.dist.is_main:
            trainer.metrics.truncate_after(trainer.step)
        return trainer

    # ------------------------------------------------------------ checkpoints

    def modules(self) -> dict[str, nn.Module]:
        mods = {"G": unwrap(self.G), "D": unwrap(self.D)}
        if self.ema is not None:
            mods["G_ema"] = self.ema.model
        return mods

    def _rank_streams(self) -> dict[str, torch.Tensor]:
        """This process's random streams, which differ between ranks: the global torch
        generator (dropout), the task generator (noise, labels, masks, augmentation) and
        the CUDA generator of this process's device."""
        streams = {"torch": torch.get_rng_state(), "task": self.gen.get_state()}
        if self.device.type == "cuda":
            streams["cuda"] = torch.cuda.get_rng_state(self.device)
        return streams

    def save(self, rank_streams: list[dict] | None = None) -> Path:
        """Write a checkpoint of everything needed to continue bit-identically.

        ``rank_streams``: every rank's :meth:`_rank_streams` under torchrun, so each
        rank resumes its own random streams (rank 0's are saved in any case).
        """
        tensors: dict[str, torch.Tensor] = {}
        optim_meta = {}
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            t, meta = ckpt.optimizer_to_flat(name, opt)
            tensors.update(t)
            optim_meta[name] = meta
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.task"] = self.gen.get_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        for rank, streams in enumerate(rank_streams or []):
            if rank > 0:
                tensors.update({f"rng.rank{rank}.{k}": v.cpu() for k, v in streams.items()})
        np_state = np.random.get_state()
        state = {
            "world_size": self.dist.world_size,
            "images_seen": self.images_seen,
            "skipped_steps": self.skipped_steps,
            "rollbacks": self.rollbacks,
            "train_seconds": self.clock.total,
            "batcher": self.batcher.state_dict(),
            "task": self.task.state_dict(),
            "optim": optim_meta,
            "precision": self.precision.state_dict(),
            "rng_python": _jsonable(random.getstate()),
            "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        }
        return ckpt.save_checkpoint(self.run_dir / "checkpoints", self.step, self.modules(), tensors, state,
                                    keep_last=self.cfg.train.keep_last)

    def load_state(self, c: ckpt.Checkpoint) -> None:
        """Restore models, optimizers, counters, data position and every RNG from a checkpoint."""
        self._drop_graph()  # a captured graph holds the optimizer state tensors being replaced
        for name, module in self.modules().items():
            if name not in c.weights:
                raise CheckpointError(c.path, f"has no weights for {name}")
            ckpt.load_module_state(module, c.weights[name], c.path / "weights.safetensors")
        try:
            for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
                opt.load_state_dict(ckpt.optimizer_from_flat(name, c.train_tensors, c.state["optim"][name]))
                self._set_optimizer_impl(opt)
            s = c.state
            self.step, self.images_seen = c.step, int(s["images_seen"])
            self.skipped_steps = int(s.get("skipped_steps", 0))
            self.rollbacks = max(self.rollbacks, int(s.get("rollbacks", 0)))
            self.clock = Stopwatch(float(s.get("train_seconds", 0.0)))
            self._apply_lr_factor()
            self.batcher.load_state_dict(s["batcher"])
            self.task.load_state_dict(s.get("task", {}))
            self.precision.load_state_dict(s.get("precision", {}))
            torch.set_rng_state(c.train_tensors["rng.torch"])
            self.gen.set_state(c.train_tensors["rng.task"])
            if torch.cuda.is_available():
                states = [c.train_tensors[k] for k in sorted(c.train_tensors) if k.startswith("rng.cuda.")]
                if states:
                    torch.cuda.set_rng_state_all(states[: torch.cuda.device_count()])
            random.setstate(_tupled(s["rng_python"]))
            np_state = s["rng_numpy"]
            np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(c.path, f"training state does not match this run: {exc}") from None
        if self.dist.rank > 0:  # the streams above are rank 0's: restore this rank's own
            self._load_rank_streams(c)

    def _load_rank_streams(self, c: ckpt.Checkpoint) -> None:
        prefix = f"rng.rank{self.dist.rank}."
        if c.state.get("world_size") == self.dist.world_size and prefix + "torch" in c.train_tensors:
            torch.set_rng_state(c.train_tensors[prefix + "torch"])
            self.gen.set_state(c.train_tensors[prefix + "task"])
            if self.device.type == "cuda" and prefix + "cuda" in c.train_tensors:
                torch.cuda.set_rng_state(c.train_tensors[prefix + "cuda"], self.device)
            return
        # Saved with another process count (or without per-rank streams): fresh streams, distinct
        # per rank and per step. Training continues correctly, though not bit-identically.
        log.info("rank %d: no saved random streams for this process count; reseeding", self.dist.rank)
        offset = self.dist.seed_offset() + 7 * self.step
        self.gen.manual_seed(self.cfg.train.seed + 1 + offset)
        torch.manual_seed(self.cfg.train.seed + offset)

    # ------------------------------------------------------------------ steps

    def _update(self, loss: torch.Tensor, params, opt: torch.optim.Optimizer) -> bool:
        """Backward and step; a non-finite loss or gradient skips the update. Returns True if applied."""
        if self.dist.enabled:  # every rank must join the gradient all-reduce, finite or not
            return not bool(self._update_on_device(loss, list(params), opt))
        if not torch.isfinite(loss):
            opt.zero_grad(set_to_none=True)
            return False
        self.precision.backward(loss)
        self.precision.unscale(opt)
        params = [p for p in params if p.grad is not None]
        if self.cfg.optim.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.float().norm() for p in params])) if params else None
        if norm is not None and not torch.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            if self.precision.scaler is not None:
                self.precision.update()  # lets the scaler lower its scale
            return False
        self.precision.step(opt)
        self.precision.update()
        return True

    def _update_on_device(self, loss: torch.Tensor, params: list[nn.Parameter],
                          opt: torch.optim.Optimizer) -> torch.Tensor:
        """Backward and step with the finiteness check on the device; returns a 0-dim bool "skipped".

        With fused Adam the check reaches the optimizer as its ``found_inf`` input
        (the kernel leaves weights, moments and step count untouched when it is
        set), so nothing is read on the host and the update can be graph-captured.
        """
        self.precision.backward(loss)
        self.precision.unscale(opt)
        grads = [p.grad for p in params if p.grad is not None]
        if self.cfg.optim.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip, foreach=True)
        elif grads:
            norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        else:
            norm = torch.zeros((), device=loss.device)
        bad = ~(torch.isfinite(loss.detach().float()) & torch.isfinite(norm.float()))
        if self.dist.enabled:  # every rank must skip or apply the same update, or the weights drift apart
            flag = bad.float().reshape(1)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            bad = flag[0] > 0
        if self.precision.scaler is None and opt.param_groups[0].get("fused"):
            opt.found_inf = bad.float().reshape(())
            try:
                opt.step()
            finally:
                del opt.found_inf
        elif bad.item():
            opt.zero_grad(set_to_none=True)
            if self.precision.scaler is not None:
                self.precision.update()
        else:
            self.precision.step(opt)
            self.precision.update()
        return bad

    def _d_no_sync(self):
        """The G step needs no gradient all-reduce for D (its parameters are frozen there)."""
        return self.D.no_sync() if isinstance(self.D, nn.parallel.DistributedDataParallel) else _nullcontext()

    def train_step(self) -> dict[str, float]:
        """One iteration: ``n_dis`` D updates, then one G update, then EMA. Returns scalar logs."""
        if self.paths["fast"]:
            return self._fast_step()
        cfg = self.cfg
        logs: dict = {}
        bad = False
        self.G.train()
        self.D.train()
        self.D.requires_grad_(True)
        for _ in range(cfg.optim.n_dis):
            real, labels = next(self.batcher)
            if cfg.train.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            self.opt_d.zero_grad(set_to_none=True)
            with self.precision.autocast():
                d_loss, d_logs = self.task.d_loss(real, labels)
            if not self._update(d_loss, self.D.parameters(), self.opt_d):
                self.skipped_steps += 1
                bad = True
            elif self.task.loss.weight_clip:
                with torch.no_grad():
                    for p in self.D.parameters():
                        p.clamp_(-cfg.loss.weight_clip, cfg.loss.weight_clip)
            self.images_seen += real.shape[0] * self.dist.world_size
        logs.update(d_loss=d_loss.detach(), **d_logs)
        # D's parameters need no gradients in the G step; this saves their weight-gradient work.
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self._d_no_sync(), self.precision.autocast():
            g_loss, g_logs = self.task.g_loss(self.local_batch)
        if not self._update(g_loss, self.G.parameters(), self.opt_g):
            self.skipped_steps += 1
            bad = True
        self.D.requires_grad_(True)
        self.bad_in_a_row = self.bad_in_a_row + 1 if bad else 0
        logs.update(g_loss=g_loss.detach(), **g_logs)
        self.step += 1
        if self.ema is not None:
            self.ema.update(unwrap(self.G), self.step)
        return _host_floats(logs)

    # ------------------------------------------------------------- fast path

    def _next_batches(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        batches = []
        for _ in range(self.cfg.optim.n_dis):
            real, labels = next(self.batcher)
            if self.cfg.train.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            batches.append((real, labels))
        return batches

    def _fast_body(self, batches, cache: bool = True) -> tuple[list[str], torch.Tensor]:
        """The iteration without host reads: returns log names and one tensor of their values.

        The last two values are the number of skipped D updates and whether the
        G update was skipped.
        """
        cfg = self.cfg
        self.G.train()
        self.D.train()
        self.D.requires_grad_(True)
        d_bad = []
        for real, labels in batches:
            self.opt_d.zero_grad(set_to_none=True)
            with self.precision.autocast(cache):
                d_loss, d_logs = self.task.d_loss(real, labels)
            d_bad.append(self._update_on_device(d_loss, self._d_params, self.opt_d))
            if self.task.loss.weight_clip:
                with torch.no_grad():
                    torch._foreach_clamp_min_(self._d_params, -cfg.loss.weight_clip)
                    torch._foreach_clamp_max_(self._d_params, cfg.loss.weight_clip)
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self._d_no_sync(), self.precision.autocast(cache):
            g_loss, g_logs = self.task.g_loss(self.local_batch)
        g_bad = self._update_on_device(g_loss, self._g_params, self.opt_g)
        self.D.requires_grad_(True)
        logs = {"d_loss": d_loss.detach(), **d_logs, "g_loss": g_loss.detach(), **g_logs}
        names = list(logs)
        values = [v.detach().float().reshape(()) if torch.is_tensor(v)
                  else torch.tensor(float(v), device=self.device) for v in logs.values()]
        values += [torch.stack(d_bad).sum().float(), g_bad.float()]
        return names, torch.stack(values)

    def _fast_step(self) -> dict[str, float]:
        batches = self._next_batches()
        graph = self._graph_for_step()
        if graph is not None:
            names, values = graph.run(batches)
        else:
            names, values = self._fast_body(batches)
        host = values.tolist()  # the one host synchronisation of the iteration
        logs = dict(zip(names, host[:-2]))
        d_skipped, g_skipped = int(host[-2]), int(host[-1])
        self.skipped_steps += d_skipped + g_skipped
        self.bad_in_a_row = self.bad_in_a_row + 1 if d_skipped or g_skipped else 0
        self.images_seen += sum(b[0].shape[0] for b in batches) * self.dist.world_size
        self.step += 1
        if self.ema is not None:
            self.ema.update(unwrap(self.G), self.step)
        return logs

    def _graph_eligible(self) -> bool:
        """CUDA graphs need a static, host-sync-free iteration (see :class:`_GraphedIteration`)."""
        cfg = self.cfg
        return (self.paths["cuda_graphs"] and self.paths["fused_optim"] and not self._graph_failed
                and not self.dist.enabled
                and self.precision.scaler is None and type(self.task) is GenerationTask
                and not self.task.uses_generator_in_losses and cfg.loss.r1_weight == 0)

    def _graph_for_step(self) -> "_GraphedIteration | None":
        if self._graph is None and self._capturable and self._graph_eligible():
            self._graph = _GraphedIteration(self)
        return self._graph

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.release()
            self._graph = None

    # ------------------------------------------------------- numerical faults

    def _apply_lr_factor(self) -> None:
        """Learning rates are the config's times rollback_lr_factor ** rollbacks."""
        self._drop_graph()  # a captured optimizer step has the old learning rate baked in
        factor = self.cfg.train.rollback_lr_factor ** self.rollbacks
        for opt, lr in ((self.opt_g, self.cfg.optim.lr_g), (self.opt_d, self.cfg.optim.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * factor * transfer.lr_mult(self.cfg, group)

    def rollback(self) -> None:
        """Return to the newest valid checkpoint with lower learning rates, or stop with a diagnosis."""
        cfg = self.cfg.train
        if self.rollbacks >= cfg.max_rollbacks:
            raise TrainingError(self.run_dir, (
                f"training diverged: {self.bad_in_a_row} non-finite steps in a row at step {self.step} after "
                f"{self.rollbacks} rollbacks (learning rates now x{cfg.rollback_lr_factor ** self.rollbacks:g}); "
                "try lower optim.lr_g/lr_d, optim.grad_clip, train.precision=fp32, or spectral norm in D"))
        self.dist.barrier()  # rank 0 has finished writing the checkpoint every rank is about to read
        latest = ckpt.find_latest(self.run_dir)
        if latest is None:
            raise TrainingError(self.run_dir, "training diverged and there is no checkpoint to roll back to")
        failed_at = self.step
        self.rollbacks += 1
        rollbacks, clock = self.rollbacks, self.clock
        self.load_state(latest)
        self.rollbacks, self.clock = rollbacks, clock  # the diverged steps cost time too
        self._apply_lr_factor()
        self.bad_in_a_row = 0
        log.warning("non-finite losses at step %d: rolled back to step %d, learning rates x%g",
                    failed_at, self.step, self.cfg.train.rollback_lr_factor ** self.rollbacks)
        if self.dist.is_main:
            self.metrics.write({"step": self.step, "event": "rollback", "from_step": failed_at,
                                "rollbacks": self.rollbacks, "lr_g": self.opt_g.param_groups[0]["lr"]})

    # ------------------------------------------------------------------- loop

    def sample_grid(self, path: Path) -> Path:
        """Write the fixed-noise grid of the EMA generator (or G) to ``path``."""
        model = self.ema.model if self.ema is not None else unwrap(self.G)
        if hasattr(self.task, "preview"):  # tasks whose G is not noise -> image draw their own grid
            return self.task.preview(model, path, self.dataset)
        was_training = model.training
        model.eval()
        z, y = fixed_noise(self.cfg, self.cfg.train.sample_grid)
        with torch.no_grad(), self.precision.autocast():
            images = model(z.to(self.device), None if y is None else y.to(self.device)).float()
        model.train(was_training)
        self.monitor.check_diversity(self.step, images)
        nrow = max(1, self.cfg.train.sample_grid // self.cfg.model.num_classes) if self.cfg.model.num_classes else None
        return save_grid(images, path, nrow=nrow)

    def evaluate(self) -> dict:
        """Periodic evaluation (FID etc.): logged to metrics.jsonl; the best FID checkpoint is kept."""
        from ganforge.train.periodic_eval import evaluate_during_training

        return evaluate_during_training(self)

    def _request_stop(self, signum, frame) -> None:
        if self._stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop_requested = True
        log.warning("signal %d received: finishing this step and writing a checkpoint", signum)

    def _save_on_main(self) -> Path | None:
        """Rank 0 writes the checkpoint (with every rank's random streams); every rank waits for it."""
        streams = self.dist.all_gather_object(self._rank_streams()) if self.dist.enabled else None
        path = self.save(streams) if self.dist.is_main else None
        self.dist.barrier()
        return path

    def train(self, stop_after: int | None = None) -> dict:
        """Run until ``train.steps`` (or ``stop_after`` more steps, or SIGINT/SIGTERM).

        Returns a summary: run_dir, step, last checkpoint and sample paths, images/s.
        """
        cfg = self.cfg
        main = self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
        handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[sig] = signal.signal(sig, self._request_stop)
            except ValueError:  # not the main thread
                pass
        progress = Progress(cfg.train.steps, self.step, cfg.train.log_every) if main else _NoProgress()
        last_ckpt, last_sample = None, None
        end = cfg.train.steps if stop_after is None else min(cfg.train.steps, self.step + stop_after)
        t_start, n_start = time.perf_counter(), self.images_seen
        t_log, n_log = t_start, self.images_seen
        if self.dist.broadcast_object(not ckpt.list_checkpoints(self.run_dir / "checkpoints")):
            if main and self.transfer is not None:
                transfer.record(self.run_dir, self.transfer, self.metrics)  # transfer.json + init_from event
            self._save_on_main()  # a start to roll back to, should the first steps diverge
        self.clock.start()
        try:
            while self.step < end and not self._stop_requested:
                logs = self.train_step()
                if self.bad_in_a_row >= cfg.train.max_bad_steps:
                    self.rollback()
                    continue
                self.monitor.check_losses(self.step, logs, self.task.loss.logistic)
                if self.step % cfg.train.log_every == 0 or self.step == end:
                    now = time.perf_counter()
                    logs["images_per_s"] = (self.images_seen - n_log) / max(now - t_log, 1e-9)
                    t_log, n_log = now, self.images_seen
                    if main:
                        self.metrics.write({"step": self.step, "images_seen": self.images_seen,
                                            "skipped_steps": self.skipped_steps,
                                            "train_seconds": round(self.clock.total, 3), **logs})
                progress.update(self.step, logs)
                if main and (self.step % cfg.train.sample_every == 0 or self.step == cfg.train.steps):
                    last_sample = self.sample_grid(self.run_dir / "samples" / f"step_{self.step:08d}.png")
                if (self.step % cfg.train.ckpt_every == 0 or self.step == cfg.train.steps) and self.bad_in_a_row == 0:
                    last_ckpt = self._save_on_main()
                if main and cfg.train.eval_every and self.step % cfg.train.eval_every == 0:
                    self.clock.pause()  # evaluation is not training time
                    try:
                        self.evaluate()
                    finally:
                        self.clock.start()
            if self.step < cfg.train.steps and (last_ckpt is None or ckpt.step_dir_name(self.step) != last_ckpt.name):
                saved = self._save_on_main()  # stopped early: keep the work
                last_ckpt = saved if main else last_ckpt
        finally:
            self.clock.pause()
            progress.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        elapsed = time.perf_counter() - t_start
        return {"run_dir": str(self.run_dir), "step": self.step, "checkpoint": str(last_ckpt) if last_ckpt else None,
                "samples": str(last_sample) if last_sample else None, "stopped_early": self.step < cfg.train.steps,
                "images_per_s": (self.images_seen - n_start) / max(elapsed, 1e-9), "seconds": elapsed}


class _GraphedIteration:
    """The whole fast iteration (every D update and the G update) as one replayable CUDA graph.

    Small GANs are launch-bound on a GPU: hundreds of tiny kernels per
    iteration, each costing more to launch than to run. Replaying a captured
    graph launches them all at once. What makes the iteration capturable:
    inputs copied into fixed buffers (real batches; noise and labels drawn
    into buffers by a :class:`DrawTape`, in eager order, from the same
    generator), no host reads (device-side finiteness check feeding fused
    Adam's ``found_inf``), capturable fused Adam, autocast without its weight
    cache. The first iterations run eagerly on a side stream (they are real
    training steps: the optimizer state and cuDNN plans are created there),
    then one iteration is captured and every later one replays it. Loading a
    checkpoint or changing learning rates drops the graph; it is rebuilt.
    """

    WARMUP = 3

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = 0
        self.stream = torch.cuda.Stream(trainer.device)
        self.static_batches = None
        self.names: list[str] = []
        self.values: torch.Tensor | None = None

    def run(self, batches) -> tuple[list[str], torch.Tensor]:
        t = self.t
        if self.graph is not None:
            for (real, labels), (s_real, s_labels) in zip(batches, self.static_batches):
                s_real.copy_(real)
                if s_labels is not None:
                    s_labels.copy_(labels)
            t.task.tape.refill(t.gen)
            self.graph.replay()
            t.task.d_steps += len(batches)  # the captured D steps ran again; keep the counter (and resume) right
            return self.names, self.values
        if self.warm < self.WARMUP:
            return self._warmup(batches)
        try:
            return self._capture(batches)
        except Exception as exc:  # an op that cannot be captured: stay eager for the rest of the run
            warnings.warn(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); training eagerly")
            torch.cuda.synchronize(t.device)
            t._graph_failed = True
            t.task.tape, t.task._pending, t.task.d_steps = None, None, self._d_steps
            self.graph = None
            return t._fast_body(batches)

    def _warmup(self, batches):
        t = self.t
        t.task.tape = DrawTape()  # records this iteration's draws; the last warm-up's record is kept
        self.stream.wait_stream(torch.cuda.current_stream(t.device))
        with torch.cuda.stream(self.stream), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            out = t._fast_body(batches)
        torch.cuda.current_stream(t.device).wait_stream(self.stream)
        self.warm += 1
        return out

    def _capture(self, batches):
        t = self.t
        tape = t.task.tape
        self.static_batches = [(r.clone(), None if y is None else y.clone()) for r, y in batches]
        tape.arm(t.device)
        self._d_steps = d_steps = t.task.d_steps
        t.opt_d.zero_grad(set_to_none=True)
        t.opt_g.zero_grad(set_to_none=True)
        torch.cuda.synchronize(t.device)
        graph = torch.cuda.CUDAGraph()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.cuda.graph(graph):
                self.names, self.values = t._fast_body(self.static_batches, cache=False)
        t.task.d_steps = d_steps  # capture only recorded the work; the steps happen at replay
        self.graph = graph
        return self.run(batches)

    def release(self) -> None:
        t = self.t
        if self.graph is not None:
            torch.cuda.synchronize(t.device)
            t.opt_d.zero_grad(set_to_none=True)  # gradients live in the graph's memory pool
            t.opt_g.zero_grad(set_to_none=True)
        t.task.tape = None
        self.graph = None


class CollapseMonitor:
    """Warnings for signs of failure that do not raise errors: D winning outright, samples losing diversity."""

    def __init__(self, patience: int = 200):
        self.patience = patience
        self.d_zero_since: int | None = None
        self.best_diversity = 0.0
        self.warned: set[str] = set()

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(message)

    def check_losses(self, step: int, logs: dict, logistic: bool) -> None:
        # A logistic D loss near 0 means D separates perfectly and G's gradients vanish.
        pinned = logistic and logs.get("d_loss", 1.0) < 1e-3
        if not pinned:
            self.d_zero_since = None
            return
        self.d_zero_since = step if self.d_zero_since is None else self.d_zero_since
        if step - self.d_zero_since >= self.patience:
            self._warn("d_zero", f"step {step}: D loss has been ~0 for {self.patience} steps; "
                       "G receives no signal (possible collapse)")

    def check_diversity(self, step: int, images: torch.Tensor) -> float:
        """Mean pairwise L2 distance of the fixed-noise samples; warns when it falls below 25% of its best."""
        flat = images.float().flatten(1)
        if flat.shape[0] < 2:
            return 0.0
        diversity = torch.pdist(flat).mean().item() / flat.shape[1] ** 0.5
        self.best_diversity = max(self.best_diversity, diversity)
        if diversity < 0.25 * self.best_diversity:
            self._warn("diversity", f"step {step}: sample diversity fell to {diversity:.3f} "
                       f"(best {self.best_diversity:.3f}): possible mode collapse")
        return diversity


class _NoProgress:
    def update(self, step: int, logs: dict) -> None:
        pass

    def close(self) -> None:
        pass


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _host_floats(logs: dict) -> dict[str, float]:
    """Logs as Python floats, reading every tensor value with one host synchronisation."""
    names = [k for k, v in logs.items() if torch.is_tensor(v)]
    out = {k: float(v) for k, v in logs.items() if not torch.is_tensor(v)}
    if names:
        values = torch.stack([logs[k].detach().float().reshape(()) for k in names]).tolist()
        out.update(zip(names, values))
    return {k: out[k] for k in logs}


def _default_task_factory(cfg: RunConfig) -> TaskFactory:
    if cfg.model.arch == "inpaint":
        from ganforge.inpaint.task import InpaintingTask

        return InpaintingTask
    return GenerationTask


def _jsonable(obj):
    if isinstance(obj, tuple):
        return {"__tuple__": [_jsonable(o) for o in obj]}
    return obj


def _tupled(obj):
    if isinstance(obj, dict) and "__tuple__" in obj:
        return tuple(_tupled(o) for o in obj["__tuple__"])
    return obj
