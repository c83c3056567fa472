"""One training step, for every task and every execution plan.

:class:`TrainStep` runs ``optim.n_dis`` discriminator phases, then the
generator phase, then the EMA update. Each phase ends in the one update
routine, :meth:`TrainStep.apply_update`: backward, gradient-norm clipping, a
finiteness check, and the optimizer step (skipped when the loss or the
gradients are not finite, so one bad batch never corrupts the weights).

The body of a step (:meth:`TrainStep.body`) reads nothing on the host when the
plan has fused Adam (the finiteness flag reaches the optimizer as its
``found_inf`` input) and returns its logs as one tensor, so it can be captured
as a CUDA graph (:mod:`ganforge.train.cuda_graph`); :meth:`TrainStep.finish`
reads that tensor once per step. On the reference path the flag is read on the
host before each optimizer step, as the plain loop of the papers does.

What the plan switches here: ``reuse_fake`` (the last D phase runs G with
gradients, D trains on the detached fakes, and the G phase back-propagates
through those same fakes, scored by the updated D: one G forward fewer per
step; this draws fewer random numbers, so a seed gives another, equally valid,
run than the reference path), ``batch_d`` (D scores ``cat(real, fake)`` in one
forward; only when D has no BatchNorm, so the result is the same function of
the weights), and precision (autocast around forward passes and losses).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganforge.losses import AdversarialLoss
from ganforge.regularizers import DRegularization
from ganforge.tasks.base import Batch, Fake, Task
from ganforge.tasks.draws import Draws
from ganforge.train.distributed import DistContext, unwrap
from ganforge.train.ema import EMA
from ganforge.train.plan import ExecutionPlan
from ganforge.train.precision import Precision

RealBatch = tuple[Tensor, "Tensor | None"]  # images (B, C, H, W) in [-1, 1], labels (B,) or None


@dataclass
class StepOutput:
    """What one step reports: scalar logs, how many of its updates were skipped, and images it consumed."""

    logs: dict[str, float]
    skipped: int
    images: int

    @property
    def bad(self) -> bool:
        return self.skipped > 0


def optimizer_params(opt: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in opt.param_groups for p in group["params"]]


class TrainStep:
    """``step(batches, iteration) -> StepOutput``: n_dis D updates, one G update, EMA.

    Args:
        task: supplies batches, fakes and the G loss (:class:`~ganforge.tasks.base.Task`).
        plan: the resolved execution switches.
        opt_g, opt_d: Adam over the *trainable* parameters of G and D (frozen ones are
            left out, and their ``requires_grad`` is never turned on here).
        adversarial, label_smoothing: the D loss of ``loss.name``.
        regs: D's penalties and constraints.
        grad_clip: max gradient norm per update (0: off).
        ema: the EMA generator, updated after each step, or None.
    """

    def __init__(self, task: Task, plan: ExecutionPlan, precision: Precision, draws: Draws,
                 opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, adversarial: AdversarialLoss,
                 regs: DRegularization, n_dis: int, label_smoothing: float = 0.0, grad_clip: float = 0.0,
                 ema: EMA | None = None, dist: DistContext | None = None):
        self.task, self.plan, self.precision, self.draws = task, plan, precision, draws
        self.G, self.D = task.G, task.D
        self.opt_g, self.opt_d = opt_g, opt_d
        self.g_params, self.d_params = optimizer_params(opt_g), optimizer_params(opt_d)
        self.adversarial, self.regs = adversarial, regs
        self.n_dis, self.label_smoothing, self.grad_clip = n_dis, label_smoothing, grad_clip
        self.ema = ema
        self.dist = dist or DistContext()

    # ---------------------------------------------------------------- inputs

    def next_batches(self, batcher) -> list[RealBatch]:
        """The real batches of one step (one per D phase), in the plan's memory layout."""
        batches = []
        for _ in range(self.n_dis):
            real, labels = next(batcher)
            if self.plan.channels_last and real.ndim == 4:
                real = real.contiguous(memory_format=torch.channels_last)
            batches.append((real, labels))
        return batches

    # ---------------------------------------------------------------- update

    def apply_update(self, loss: Tensor, params: list[nn.Parameter], opt: torch.optim.Optimizer) -> Tensor:
        """Backward and optimizer step, skipped when the loss or gradient norm is not finite.

        Returns a 0-dim bool tensor, True when the update was skipped. Under torchrun
        every rank skips or applies together (the flag is all-reduced), or the
        replicas' weights would drift apart.
        """
        self.precision.backward(loss)
        self.precision.unscale(opt)
        if self.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads, foreach=True) if grads else torch.zeros((), device=loss.device)
        bad = ~(torch.isfinite(loss.detach().float()) & torch.isfinite(norm.float()))
        if self.dist.enabled:
            flag = bad.float().reshape(1)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            bad = flag[0] > 0
        if self.plan.skip_on_device:
            # Fused Adam leaves weights, moments and its step count untouched when found_inf is set.
            opt.found_inf = bad.float().reshape(())
            try:
                opt.step()
            finally:
                del opt.found_inf
        elif bad.item():
            opt.zero_grad(set_to_none=True)
            self.precision.update()  # lets a gradient scaler lower its scale
        else:
            self.precision.step(opt)
            self.precision.update()
        return bad

    # ------------------------------------------------------------------ body

    def _trainable_d(self, flag: bool) -> None:
        # D needs no weight gradients in the G phase; this saves their work. Only D's
        # trainable parameters are toggled, so frozen layers stay frozen.
        for p in self.d_params:
            p.requires_grad_(flag)

    def _score(self, batch: Batch, fake: Tensor) -> tuple[Tensor, Tensor]:
        """D's logits for the real and the (detached) fake images: (B,), (B,)."""
        aug = self.task.augment
        if self.plan.batch_d:
            # Each half augmented separately (the random stream of two calls), scored at once.
            cond = None if batch.cond is None else torch.cat([batch.cond, batch.cond])
            logits = self.D(torch.cat([aug(batch.real), aug(fake)]), cond)
            return logits[: batch.size], logits[batch.size:]
        return self.D(aug(batch.real), batch.cond), self.D(aug(fake), batch.cond)

    def _d_summary(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        """Mean D(x) and D(G(z)) as 0-dim float32: probabilities for logistic losses, raw values otherwise."""
        real, fake = real_logits.detach().float(), fake_logits.detach().float()
        if self.adversarial.logistic:
            real, fake = torch.sigmoid(real), torch.sigmoid(fake)
        return {"d_real": real.mean(), "d_fake": fake.mean()}

    def _d_phase(self, real: Tensor, labels: Tensor | None, d_step: int, keep: bool,
                 cache: bool) -> tuple[Batch, Fake | None, Tensor, dict]:
        task = self.task
        batch = task.d_batch(real, labels)
        self.opt_d.zero_grad(set_to_none=True)
        with self.precision.autocast(cache):
            with torch.set_grad_enabled(keep):
                fake = task.generate(batch)
            fake_images = fake.images.detach()
            real_logits, fake_logits = self._score(batch, fake_images)
            loss = self.adversarial.d_loss(real_logits, fake_logits, self.label_smoothing)
            penalty, logs = self.regs.penalty(d_step, lambda x: self.D(task.augment(x), batch.cond),
                                              batch.real, fake_images, self.draws)
            if penalty is not None:
                loss = loss + penalty
        bad = self.apply_update(loss, self.d_params, self.opt_d)
        self.regs.constrain(self.d_params)
        logs = {"d_loss": loss.detach(), **logs, **self._d_summary(real_logits, fake_logits)}
        return batch, (fake if keep else None), bad, logs

    def body(self, batches: list[RealBatch], iteration: int, cache: bool = True) -> tuple[list[str], Tensor]:
        """The step without host reads (on the fast path): log names and one tensor of their values.

        ``iteration`` is the index of this step (0-based); D phase ``i`` is D step
        ``iteration * n_dis + i``, which decides when lazy penalties are due. The last two
        values are the number of skipped D updates and whether the G update was skipped.
        """
        self.G.train()
        self.D.train()
        self._trainable_d(True)
        d_bad, kept, batch, d_logs = [], None, None, {}
        last = len(batches) - 1
        for i, (real, labels) in enumerate(batches):
            keep = self.plan.reuse_fake and i == last
            batch, fake, bad, d_logs = self._d_phase(real, labels, iteration * self.n_dis + i, keep, cache)
            d_bad.append(bad)
            if fake is not None:
                kept = (batch, fake)
        self._trainable_d(False)
        self.opt_g.zero_grad(set_to_none=True)
        g_batch, fake = kept if kept is not None else (self.task.g_batch(batch), None)
        with self._d_no_sync(), self.precision.autocast(cache):
            fake = fake if fake is not None else self.task.generate(g_batch)
            g_loss, g_logs = self.task.g_loss(g_batch, fake)
        g_bad = self.apply_update(g_loss, self.g_params, self.opt_g)
        self._trainable_d(True)
        logs = {**d_logs, "g_loss": g_loss.detach(), **g_logs}
        values = [v.detach().float().reshape(()) for v in logs.values()]
        values += [torch.stack(d_bad).sum().float(), g_bad.float()]
        return list(logs), torch.stack(values)

    def _d_no_sync(self):
        """The G phase needs no gradient all-reduce for D (its parameters are frozen there)."""
        if isinstance(self.D, nn.parallel.DistributedDataParallel):
            return self.D.no_sync()
        return contextlib.nullcontext()

    # ---------------------------------------------------------------- finish

    def finish(self, names: list[str], values: Tensor, batches: list[RealBatch], iteration: int) -> StepOutput:
        """Read the step's values on the host (the one synchronisation of a step) and update the EMA."""
        host = values.tolist()
        skipped = int(host[-2]) + int(host[-1])
        if self.ema is not None:
            self.ema.update(unwrap(self.G), iteration + 1)
        images = sum(real.shape[0] for real, _ in batches) * self.dist.world_size
        return StepOutput(dict(zip(names, host[:-2])), skipped, images)

    def __call__(self, batches: list[RealBatch], iteration: int) -> StepOutput:
        return self.finish(*self.body(batches, iteration), batches, iteration)

    def release(self) -> None:
        """Nothing to release in eager mode (the CUDA-graph wrapper has the same method)."""
