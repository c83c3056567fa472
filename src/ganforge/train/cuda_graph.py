"""The training step as one replayable CUDA graph (``plan.cuda_graphs``).

Small GANs are launch-bound on a GPU: hundreds of tiny kernels per step, each
costing more to launch than to run. Replaying a captured graph launches them all
at once. :class:`GraphedStep` wraps the same :class:`~ganforge.train.step.TrainStep`
the eager path runs; what makes that step capturable is decided by the plan
(fused capturable Adam with the finiteness flag as its ``found_inf`` input, so no
host reads; no lazy or double-backward regularisers; a task whose draws all go
through :class:`~ganforge.tasks.draws.Draws`):

* real batches are copied into fixed buffers before each replay;
* the step's random draws are recorded during the last warm-up step and then
  served from buffers that :meth:`Draws.refill` fills from the same generator,
  in eager order, so the random stream matches eager execution;
* the first steps run eagerly on a side stream (they are real training steps:
  optimizer state and cuDNN plans are created there), then one step is captured,
  and every later one replays it, autocast without its weight cache.

Loading a checkpoint must :meth:`release` the graph (it holds the optimizer's
state tensors); the next step captures again. Learning rates are device tensors
here (:func:`~ganforge.train.optim.apply_plan`), changed in place without a
new capture. A step that fails to capture falls back to eager execution for
the rest of the run, with a warning (:attr:`failed`); the trainer then also drops
the bf16 that ``precision: auto`` chose for the graph
(:meth:`~ganforge.train.plan.ExecutionPlan.without_cuda_graphs`).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import Tensor

from ganforge.train.step import RealBatch, StepOutput, TrainStep

log = logging.getLogger(__name__)


class GraphedStep:
    """``GraphedStep(step)(batches, iteration) -> StepOutput``, like the eager step."""

    WARMUP = 3

    def __init__(self, step: TrainStep, device: torch.device):
        self.step, self.device = step, device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None  # why capture failed, once it has
        self.warm = 0
        self.stream = torch.cuda.Stream(device)
        self.static: list[RealBatch] = []
        self.names: list[str] = []
        self.values: Tensor | None = None

    def __call__(self, batches: list[RealBatch], iteration: int) -> StepOutput:
        if self.failed is not None:
            return self.step(batches, iteration)
        if self.graph is None:
            if self.warm < self.WARMUP:
                return self.step.finish(*self._warmup(batches, iteration), batches, iteration)
            try:
                self._capture(batches, iteration)
            except Exception as exc:  # an op that cannot be captured: stay eager for the rest of the run
                self._give_up(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                return self.step(batches, iteration)
        for (real, labels), (s_real, s_labels) in zip(batches, self.static):
            s_real.copy_(real)
            if s_labels is not None:
                s_labels.copy_(labels)
        self.step.draws.refill()
        self.graph.replay()
        return self.step.finish(self.names, self.values, batches, iteration)

    def _warmup(self, batches, iteration):
        draws = self.step.draws
        draws.record()  # the last warm-up step's draws are the ones captured
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            out = self.step.body(batches, iteration)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        self.warm += 1
        return out

    def _capture(self, batches, iteration) -> None:
        step = self.step
        self.static = [(r.clone(), None if y is None else y.clone()) for r, y in batches]
        step.draws.arm()
        step.opt_d.zero_grad(set_to_none=True)
        step.opt_g.zero_grad(set_to_none=True)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.cuda.graph(graph):
                # The iteration index only matters for lazy penalties, which the plan excludes here.
                self.names, self.values = step.body(self.static, iteration, cache=False)
        self.graph = graph
        log.info("captured the training step as a CUDA graph")

    def _give_up(self, why: str) -> None:
        warnings.warn(f"CUDA graph capture failed ({why}); training eagerly")
        torch.cuda.synchronize(self.device)
        self.failed = why
        self.graph = None
        self.step.draws.stop()
        self.step.opt_d.zero_grad(set_to_none=True)
        self.step.opt_g.zero_grad(set_to_none=True)

    def release(self) -> None:
        """Drop the captured graph (after loading state); the next step recaptures."""
        if self.graph is not None:
            torch.cuda.synchronize(self.device)
            self.step.opt_d.zero_grad(set_to_none=True)  # gradients live in the graph's memory pool
            self.step.opt_g.zero_grad(set_to_none=True)
        self.step.draws.stop()
        self.graph = None
        self.warm = 0
