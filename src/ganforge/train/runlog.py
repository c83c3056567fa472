"""Run logging: metrics as JSON lines, and a progress display (bar on a terminal, lines otherwise)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from tqdm import tqdm


class MetricsLog:
    """Append one JSON object per line to ``RUN/metrics.jsonl`` (flushed per line, so a kill loses nothing logged).

    ``sinks``: callables that also receive every record written (e.g. the
    TensorBoard writer), so every place that logs a record feeds them too.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sinks: list = []

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")
        for sink in self.sinks:
            sink(clean)

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (after resuming from an earlier checkpoint)."""
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except ValueError:
                continue  # a line torn by a kill
        self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


class Stopwatch:
    """Wall-clock seconds of training, carried across resumes; paused while evaluating.

    ``total`` is what ``metrics.jsonl`` reports as ``train_seconds``: the time
    a run has spent training (sample grids and checkpoints included, periodic
    evaluation excluded), so time-to-quality numbers do not depend on how
    often the run was evaluated or how many times it was resumed.
    """

    def __init__(self, total: float = 0.0, clock=time.perf_counter):
        self._base = float(total)
        self._since: float | None = None
        self._clock = clock

    def start(self) -> None:
        if self._since is None:
            self._since = self._clock()

    def pause(self) -> None:
        if self._since is not None:
            self._base += self._clock() - self._since
            self._since = None

    @property
    def total(self) -> float:
        running = self._clock() - self._since if self._since is not None else 0.0
        return self._base + running


class Progress:
    """tqdm bar with ETA when stderr is a terminal; a plain line every ``every`` steps otherwise.

    ``budget`` (``train.max_seconds``; 0 = none) and ``seconds`` (a callable giving the
    run's train_seconds) bound the ETA: a run stopped by its time budget ends when
    the budget is spent, however many steps remain.
    """

    def __init__(self, total: int, start: int, every: int, stream=None, budget: float = 0.0, seconds=None):
        self.stream = stream or sys.stderr
        self.total, self.every = total, every
        self.budget, self.seconds = float(budget or 0.0), seconds
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=start, file=self.stream, dynamic_ncols=True) if self.tty else None
        self.t0, self.start = time.perf_counter(), start

    def eta(self, step: int) -> float:
        """Seconds left: the steps left at the rate so far, capped by what remains of the time budget."""
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.start) / max(elapsed, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        if self.budget and self.seconds is not None:
            eta = min(eta, max(0.0, self.budget - self.seconds()))
        return eta

    def update(self, step: int, logs: dict) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            post = {k: f"{logs[k]:.3f}" for k in ("d_loss", "g_loss") if k in logs}
            if self.budget and self.seconds is not None:  # tqdm's own ETA counts steps only
                post["budget_left"] = f"{max(0.0, self.budget - self.seconds()):.0f}s"
            self.bar.set_postfix(post)
        elif step % self.every == 0 or step == self.total:
            parts = " ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, float))
            print(f"step {step}/{self.total} {parts} eta {self.eta(step):.0f}s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ThroughputWatch:
    """One warning when training throughput falls far below the run's first logging window.

    A CPU run whose threads meet a competing process slows down 20-35x
    (:mod:`ganforge.threads`); the user sees only a slow run. ``check(images_per_s)``
    takes each logging window's rate and returns the warning text once, the first
    time a rate falls under ``ratio`` x the first window's; else None.
    """

    def __init__(self, threads: int, ratio: float = 1 / 3, cpu: bool = True):
        self.threads, self.ratio, self.cpu = threads, ratio, cpu
        self.first: float | None = None
        self.warned = False

    def check(self, images_per_s: float) -> str | None:
        if not math.isfinite(images_per_s) or images_per_s <= 0:
            return None
        if self.first is None:
            self.first = images_per_s
            return None
        if self.warned or images_per_s >= self.ratio * self.first:
            return None
        self.warned = True
        why = (f"another process may be competing for the CPU; with {self.threads} threads try --threads 1 "
               "(train.threads=1)" if self.cpu and self.threads != 1 else
               "another process may be competing for the CPU or the device")
        return (f"training slowed to {images_per_s:.0f} images/s from {self.first:.0f} in the first logging window: "
                f"{why}")


class NoProgress:
    """The progress display of processes that print nothing (ranks > 0 under torchrun)."""

    def update(self, step: int, logs: dict) -> None:
        pass

    def close(self) -> None:
        pass
