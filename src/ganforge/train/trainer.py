"""The training loop: wiring, cadence (logs, samples, checkpoints, evaluation) and recovery.

One :class:`Trainer` owns a run directory (``config.yaml``, ``execution.json``,
``metrics.jsonl``, ``samples/``, ``checkpoints/``). The task (:mod:`ganforge.tasks`)
says what is learned, the step (:mod:`ganforge.train.step`) runs one iteration, the
plan (:mod:`ganforge.train.plan`) decided once how it executes, and
:mod:`ganforge.train.state` saves everything needed to continue bit-identically;
this module only wires them and runs the loop.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

from ganforge import checkpoint as ckpt
from ganforge.config import RunConfig
from ganforge.data.loader import batcher_for
from ganforge.devices import resolve_device
from ganforge.errors import CheckpointError, TrainingError
from ganforge.imageio import save_grid
from ganforge.models import build_models
from ganforge.data.subset import training_set
from ganforge.regularizers import d_regularization
from ganforge.tasks import task_class
from ganforge.train import distributed, transfer
from ganforge.train.distributed import unwrap
from ganforge.train.ema import EMA, generator_draws
from ganforge.train.clock import RunClock
from ganforge.train.collapse import CollapseMonitor
from ganforge.train.hyperparams import Hyperparameters
from ganforge.train.optim import apply_plan, build_adam
# Imported with the trainer, not at the first evaluation: a package upgraded or edited under
# a running training would otherwise mix old and new modules hours into the run.
from ganforge.train.periodic_eval import evaluate_during_training
from ganforge.train.plan import resolve_plan
from ganforge.train.precision import Precision
from ganforge.train.rundir import catch_stop_signals, start_run_dir, stop_tensorboard
from ganforge.train.runlog import MetricsLog, NoProgress, Progress, ThroughputWatch
from ganforge.train.state import Counters, RandomStreams, load_state, save_state
from ganforge.train.step import TrainStep

log = logging.getLogger(__name__)


class Trainer:
    """Train one run. ``Trainer(cfg, run_dir).train()``; ``Trainer.resume(run_dir).train()``.

    ``dataset`` (an :class:`~ganforge.data.ImageDataset`) replaces loading ``cfg.data``.
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path, dataset=None):
        self.cfg = cfg
        self.task_cls = task_class(cfg)
        self.task_cls.check_config(cfg)  # refuses what the task cannot do before any work
        self.dist, dist_device = distributed.init_from_env(cfg.train.device)
        self.run_dir = Path(self.dist.broadcast_object(str(run_dir)))  # rank 0 names the run
        self.device = dist_device or resolve_device(cfg.train.device, "train.device")
        self.streams = RandomStreams(cfg.train.seed, self.device, self.dist)
        load_size = self.task_cls.load_size(cfg)
        self.dataset = training_set(cfg, load_size, dataset)
        self.local_batch = self.dist.local_batch(cfg.train.batch_size)
        self.batcher = batcher_for(cfg, self.dataset, load_size, self.device, (self.dist.rank, self.dist.world_size))
        G, D = (m.to(self.device) for m in build_models(cfg))
        self.transfer = transfer.initialise(cfg, G, D, self.run_dir)  # pretrained weights, frozen blocks
        self.streams.after_model_init()
        regs = d_regularization(cfg)
        self.plan = resolve_plan(cfg, self.device, self.task_cls.capabilities_for(cfg, D), regs, self.dist.enabled)
        self.hyper = Hyperparameters(cfg, regs)
        self.plan = self.plan.apply_backend_flags()  # as applied: the allocator may refuse
        self.precision = Precision(self.plan.precision, self.device)
        if self.plan.channels_last:
            G, D = (m.to(memory_format=torch.channels_last) for m in (G, D))
        self.G, self.D = self._wrap(G, D)
        self.task = self.task_cls(cfg, self.G, self.D, self.streams.draws)
        t = cfg.train
        self.ema = (EMA(G, t.ema_decay, t.ema_start, t.ema_halflife_kimg * 1000, t.ema_rampup, t.batch_size,
                        t.batch_size * cfg.optim.n_dis) if t.ema_decay > 0 or t.ema_halflife_kimg > 0 else None)
        transfer.load_ema(self.ema, self.transfer)
        self.opt_g, self.opt_d = (build_adam(transfer.param_groups(self.transfer, name, m, lr, cfg), lr, cfg.optim,
                                             self.plan) for name, m, lr in (("G", G, cfg.optim.lr_g),
                                                                           ("D", D, cfg.optim.lr_d)))
        self.step_fn = TrainStep(self.task, self.plan, self.precision, self.streams.draws, self.opt_g, self.opt_d,
                                 self.task.adversarial, regs, cfg.optim.n_dis, cfg.loss.label_smoothing,
                                 cfg.optim.grad_clip, self.ema, self.dist)
        self.runner = self.step_fn
        if self.plan.cuda_graphs:
            from ganforge.train.cuda_graph import GraphedStep

            self.runner = GraphedStep(self.step_fn, self.device)
        self.counters = Counters()
        self.run_clock = RunClock(self.counters, self.dist, self.device, cfg.train.log_every, cfg.train.max_seconds)
        self.monitor = CollapseMonitor()
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self._stop_requested = False
        self.tensorboard = None  # TensorBoardLog while train() runs with train.tensorboard on rank 0

    def _wrap(self, G: nn.Module, D: nn.Module) -> tuple[nn.Module, nn.Module]:
        """DDP and torch.compile wrappers, as the plan says."""
        sync_bn = self.cfg.train.sync_bn
        G, D = self.dist.wrap(G, self.device, sync_bn), self.dist.wrap(D, self.device, sync_bn)
        if self.plan.compile_g:
            G = torch.compile(G)
        if self.plan.compile_d:
            D = torch.compile(D)
        return G, D

    # ------------------------------------------------------------ accessors

    @property
    def step(self) -> int:
        """Completed generator steps."""
        return self.counters.step

    @property
    def clock(self):
        """The training clock (``train_seconds``)."""
        return self.counters.clock

    @property
    def stop_requested(self) -> bool:
        """True once SIGINT/SIGTERM asked the run to stop (it stops after the current step)."""
        return self._stop_requested

    def published_generator(self) -> nn.Module:
        """The generator that previews, evaluations and checkpoints show: the EMA copy, else G (unwrapped).

        With ``train.ema_bn_batches`` > 0 the EMA copy's BatchNorm statistics are first
        recomputed from that many batches of its own samples (once per G step; seeded,
        so a resumed run saves the same statistics). Training never reads them.
        """
        if self.ema is None:
            return unwrap(self.G)
        self.ema.refresh_statistics(generator_draws(self.task_cls, self.cfg, self.device),
                                    self.cfg.train.ema_bn_batches)
        return self.ema.model

    def modules(self) -> dict[str, nn.Module]:
        """The unwrapped modules a checkpoint holds: G, D and (when on) the EMA generator."""
        mods = {"G": unwrap(self.G), "D": unwrap(self.D)}
        if self.ema is not None:
            mods["G_ema"] = self.ema.model
        return mods

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    # ------------------------------------------------------------ checkpoints

    @classmethod
    def resume(cls, run_dir: str | Path, cfg: RunConfig | None = None, checkpoint: ckpt.Checkpoint | None = None,
               **kwargs) -> "Trainer":
        """Rebuild a run from its resolved config and ``checkpoint`` (default: its newest valid one)."""
        from ganforge.config import load_config

        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(run_dir, "not a run directory (no config.yaml)")
        trainer = cls(cfg or load_config(run_dir / "config.yaml"), run_dir, **kwargs)
        if trainer.dist.is_main:
            ckpt.clean_stale(run_dir / "checkpoints")
        trainer.dist.barrier()
        latest = checkpoint or ckpt.find_latest(run_dir)
        if latest is None:
            raise CheckpointError(run_dir / "checkpoints", "no valid checkpoint to resume from")
        trainer.load_state(latest)
        if trainer.dist.is_main:
            trainer.metrics.truncate_after(trainer.step)
        return trainer

    def save(self, all_rank_streams: list[dict] | None = None) -> Path:
        """Write a checkpoint of everything needed to continue bit-identically (rank 0 calls this)."""
        self.published_generator()  # the EMA copy is saved with the statistics it is evaluated with
        return save_state(self.run_dir / "checkpoints", self.counters, self.modules(), self.optimizers,
                          self.batcher, self.precision, self.streams, all_rank_streams, self.dist.world_size,
                          self.cfg.train.keep_last)

    def load_state(self, c: ckpt.Checkpoint) -> None:
        """Restore models, optimizers, counters, data position and every random stream from a checkpoint."""
        self.runner.release()  # a captured graph holds the optimizer state tensors being replaced
        load_state(c, self.counters, self.modules(), self.optimizers, self.batcher, self.precision, self.streams)
        if self.ema is not None:
            self.ema.statistics_changed()
        for opt in self.optimizers.values():
            apply_plan(opt, self.plan)  # this run's implementation, whatever saved the state
        self._apply_lr_factor()

    def _save_on_main(self) -> Path | None:
        """Rank 0 writes the checkpoint (with every rank's random streams); every rank waits for it."""
        streams = self.dist.all_gather_object(self.streams.rank_streams()) if self.dist.enabled else None
        path, error = None, None
        if self.dist.is_main:
            try:
                path = self.save(streams)
            except CheckpointError as exc:
                error = exc
            if self.tensorboard is not None:
                self.tensorboard.flush()
        # Also the barrier: every rank learns whether rank 0's save failed, and none waits forever.
        failed = self.dist.broadcast_object(str(error) if error is not None else None)
        if error is not None:
            raise error
        if failed is not None:
            raise CheckpointError(self.run_dir / "checkpoints", f"rank 0 could not save: {failed}")
        return path

    # ------------------------------------------------------- numerical faults

    def _apply_lr_factor(self) -> None:
        """Rates, gamma and beta2 for the next step (:class:`~ganforge.train.hyperparams.Hyperparameters`)."""
        c = self.counters
        self.hyper.apply(self.opt_g, self.opt_d, c.step, c.images_seen, c.rollbacks, self.run_clock.seconds)

    def rollback(self) -> None:
        """Return to the newest valid checkpoint with lower learning rates, or stop with a diagnosis."""
        t, c = self.cfg.train, self.counters
        if c.rollbacks >= t.max_rollbacks:
            raise TrainingError(self.run_dir, (
                f"training diverged: {c.bad_in_a_row} non-finite steps in a row at step {c.step} after "
                f"{c.rollbacks} rollbacks (learning rates now x{t.rollback_lr_factor ** c.rollbacks:g}); "
                "try lower optim.lr_g/lr_d, optim.grad_clip, train.precision=fp32, or spectral norm in D"))
        self.dist.barrier()  # rank 0 has finished writing the checkpoint every rank is about to read
        latest = ckpt.find_latest(self.run_dir)
        if latest is None:
            raise TrainingError(self.run_dir, "training diverged and there is no checkpoint to roll back to")
        failed_at = c.step
        rollbacks, clock = c.rollbacks + 1, c.clock
        self.load_state(latest)
        c.rollbacks, c.clock = rollbacks, clock  # the diverged steps cost time too
        self._apply_lr_factor()
        log.warning("non-finite losses at step %d: rolled back to step %d, learning rates x%g",
                    failed_at, c.step, t.rollback_lr_factor ** c.rollbacks)
        if self.dist.is_main:
            self.metrics.write({"step": c.step, "event": "rollback", "from_step": failed_at,
                                "rollbacks": c.rollbacks, "lr_g": self.cfg.optim.lr_g * self.hyper.lr_factor})

    # ------------------------------------------------------------------- loop

    def train_step(self) -> dict[str, float]:
        """One iteration (n_dis D updates, one G update, EMA); returns its scalar logs."""
        runner = self.runner
        out = runner(self.step_fn.next_batches(self.batcher), self.counters.step)
        failed = getattr(runner, "failed", None)
        if failed:  # capture failed (warned once): eager from now on, and the run directory says so
            self.runner = self.step_fn
            self.plan = self.plan.without_cuda_graphs(f"capture failed: {failed}")
            if self.plan.precision != self.precision.mode:  # bf16 was for the graph: eager steps run fp32
                self.precision = self.step_fn.precision = Precision(self.plan.precision, self.device)
            if self.dist.is_main:
                self.plan.write(self.run_dir / "execution.json")
                self.metrics.write({"step": self.counters.step, "event": "cuda_graph_failed", "reason": failed})
        self.counters.count(out.skipped, out.images)
        return out.logs

    def sample_grid(self, path: Path) -> Path:
        """Write the task's preview grid of the EMA generator (or G) to ``path``."""
        model = self.published_generator()
        images, nrow = self.task.preview(model, self.dataset, self.precision.autocast)
        if self.task.from_noise:  # a grid of samples: look for a collapse to one image
            self.monitor.check_diversity(self.step, images)
        return save_grid(images, path, nrow=nrow)

    def _write_samples(self) -> Path:
        """The preview grid of this step (and its TensorBoard image)."""
        path = self.sample_grid(self.run_dir / "samples" / f"step_{self.step:08d}.png")
        if self.tensorboard is not None:
            self.tensorboard.add_grid(self.step, path)
        return path

    def evaluate(self) -> dict:
        """Periodic evaluation (FID etc.): logged to metrics.jsonl; the best FID checkpoint is kept."""
        return evaluate_during_training(self)

    def _request_stop(self, signum, frame) -> None:
        if self._stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop_requested = True
        log.warning("signal %d received: finishing this step and writing a checkpoint", signum)

    def train(self, stop_after: int | None = None) -> dict:
        """Run until ``train.steps`` (or ``stop_after`` more steps, or SIGINT/SIGTERM).

        Returns a summary: run_dir, step, last checkpoint and sample paths, images/s.
        """
        t, c = self.cfg.train, self.counters
        main = self.dist.is_main
        if main:
            self.tensorboard = start_run_dir(self.run_dir, self.cfg, self.plan, self.metrics, self.step)
        progress = Progress(t.steps, c.step, t.log_every, budget=t.max_seconds,
                            seconds=lambda: c.clock.total) if main else NoProgress()
        watch = ThroughputWatch(torch.get_num_threads(), cpu=self.device.type == "cpu")
        last_ckpt, last_sample, timed_out = None, None, False
        end = t.steps if stop_after is None else min(t.steps, c.step + stop_after)
        t_start, n_start = time.perf_counter(), c.images_seen
        t_log, n_log = t_start, c.images_seen
        if self.dist.broadcast_object(not ckpt.list_checkpoints(self.run_dir / "checkpoints")):
            if main and self.transfer is not None:
                transfer.record(self.run_dir, self.transfer, self.metrics)  # transfer.json + init_from event
            self._save_on_main()  # a start to roll back to, should the first steps diverge
        restore_signals = catch_stop_signals(self._request_stop)
        c.clock.start()
        try:
            while c.step < end and not self._stop_requested:
                if self.run_clock.out_of_time():
                    timed_out = True
                    break
                if not self.hyper.constant:
                    self._apply_lr_factor()
                logs = self.train_step()
                if c.bad_in_a_row >= t.max_bad_steps:
                    self.rollback()
                    continue
                self.monitor.check_losses(c.step, logs, self.task.adversarial.logistic)
                if c.step % t.log_every == 0 or c.step == end:
                    now = time.perf_counter()
                    logs["images_per_s"] = (c.images_seen - n_log) / max(now - t_log, 1e-9)
                    logs.update(self.hyper.values(self.opt_g, self.ema, c.step))
                    t_log, n_log = now, c.images_seen
                    if main and (slow := watch.check(logs["images_per_s"])):
                        log.warning(slow)
                    if main:
                        self.metrics.write({"step": c.step, "images_seen": c.images_seen,
                                            "skipped_steps": c.skipped_steps,
                                            "train_seconds": round(c.clock.total, 3), **logs})
                progress.update(c.step, logs)
                if main and (c.step % t.sample_every == 0 or c.step == t.steps):
                    last_sample = self._write_samples()
                if (c.step % t.ckpt_every == 0 or c.step == t.steps) and c.bad_in_a_row == 0:
                    last_ckpt = self._save_on_main()
                if main and t.eval_every and c.step % t.eval_every == 0:
                    self.run_clock.pause()  # evaluation is not training time (nor part of images/s)
                    t_eval = time.perf_counter()
                    try:
                        self.evaluate()
                    finally:
                        c.clock.start()
                        t_log += time.perf_counter() - t_eval
            self.run_clock.pause()  # before the last save, so that it holds the run's final train_seconds
            if main and timed_out:
                log.info("train.max_seconds=%g reached at step %d (%.1f s of training)",
                         t.max_seconds, c.step, c.clock.total)
                if last_sample is None or last_sample.stem != f"step_{c.step:08d}":
                    last_sample = self._write_samples()
            if c.step < t.steps and (last_ckpt is None or ckpt.step_dir_name(c.step) != last_ckpt.name):
                saved = self._save_on_main()  # stopped early: keep the work
                last_ckpt = saved if main else last_ckpt
        finally:
            c.clock.pause()
            progress.close()
            restore_signals()
            self.tensorboard = stop_tensorboard(self.tensorboard, self.metrics)
        elapsed = time.perf_counter() - t_start
        return {"run_dir": str(self.run_dir), "step": c.step, "checkpoint": str(last_ckpt) if last_ckpt else None,
                "samples": str(last_sample) if last_sample else None, "stopped_early": c.step < t.steps,
                "out_of_time": timed_out,
                "images_per_s": (c.images_seen - n_start) / max(elapsed, 1e-9), "seconds": elapsed}
