"""The run's training clock as every rank sees it: ``train_seconds``, the time budget, pauses.

``train_seconds`` is the wall-clock time a run has spent training, carried across
resumes (:class:`~ganforge.train.runlog.Stopwatch` in the run's counters); periodic
evaluation is paused out of it. Under torchrun ranks' clocks differ by a little, so
rank 0's value is shared at logging steps only (one broadcast each) and used by every
rank until the next one: all ranks stop on the same step.
"""

from __future__ import annotations

import torch


class RunClock:
    """``seconds()``, ``out_of_time()`` and ``pause()`` for a trainer's counters, process group and device."""

    def __init__(self, counters, dist, device: torch.device, log_every: int, budget: float):
        self.counters, self.dist, self.device = counters, dist, device
        self.log_every, self.budget = log_every, budget
        self._agreed: tuple[int, float] | None = None  # (step, train_seconds) every rank uses

    def seconds(self) -> float:
        """The run's train_seconds as every rank sees them (for the time budget and a timed schedule)."""
        if not self.dist.enabled:
            return self.counters.clock.total
        step = self.counters.step
        agreed = self._agreed
        if agreed is None or (step != agreed[0] and step % self.log_every == 0):
            agreed = self._agreed = (step, float(self.dist.broadcast_object(self.counters.clock.total)))
        return agreed[1]

    def out_of_time(self) -> bool:
        """True once train_seconds reach the budget (``train.max_seconds``; 0 = none), on every rank alike."""
        return bool(self.budget) and self.seconds() >= self.budget

    def pause(self) -> None:
        """Stop the clock once the device has finished the steps queued so far.

        CUDA work is asynchronous: without the wait, steps still queued on the
        device would run after the clock stopped and count as evaluation time.
        """
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.counters.clock.pause()
