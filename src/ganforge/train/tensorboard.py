"""TensorBoard logging (``train.tensorboard: true``): the records of ``metrics.jsonl`` and the sample grids.

The trainer hands this writer every record it appends to ``metrics.jsonl``
(through :class:`ganforge.train.runlog.MetricsLog`'s sinks) and every sample
grid it saves; only rank 0 writes. Files go to ``RUN/tensorboard/``; view them
with ``tensorboard --logdir RUN/tensorboard``.

Tags: ``loss/d``, ``loss/g``, ``d/real``, ``d/fake``, ``speed/images_per_s``,
``train/skipped_steps``, ``train/images_seen``, ``train/seconds``,
``loss/gp``, ``loss/r1``, any other training scalar as ``train/KEY``,
evaluation metrics as ``eval/KEY`` (e.g. ``eval/fid2k_test``), and the grids
as the image ``samples``. The step of every event is the generator step.

No duplicated steps: a run resumed from the checkpoint at step S (or rolled
back to it) has already written events past S. TensorBoard's own mechanism
hides them: a ``SessionLog.START`` event at step S+1 tells its readers to drop
every earlier-written event at S+1 or later (``SummaryWriter``'s
``purge_step``). Readers apply it in file order, and event files are ordered by
the creation second in their names, so a resumed writer starts its file in a
later second than any file already there.

The event log is optional and never stops a run: a writer that cannot be
created (``RUN/tensorboard`` read-only, immutable, on a full disk) or that
fails later is reported in one warning line, and training goes on without it
(:meth:`TensorBoardLog.open`). The writer's background thread would print a
traceback of its failure; that thread's exceptions are left to the warning.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from pathlib import Path

import numpy as np

from ganforge.errors import ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'ganforge[tensorboard]' (the tensorboard package)"

TAGS = {"d_loss": "loss/d", "g_loss": "loss/g", "d_real": "d/real", "d_fake": "d/fake",
        "images_per_s": "speed/images_per_s", "skipped_steps": "train/skipped_steps",
        "images_seen": "train/images_seen", "train_seconds": "train/seconds", "gp": "loss/gp", "r1": "loss/r1"}
# Evaluation-record keys that describe the evaluation rather than measure the generator.
_EVAL_META = frozenset({"step", "event", "eval", "train_seconds", "best", "n_fake", "n_real", "seconds", "n",
                        "hole_ratio", "seed", "cls_accuracy"})
_FILE_SECOND = re.compile(r"events\.out\.tfevents\.(\d+)\.")


def _scalar(v) -> float | None:
    """A loggable number: ints and finite floats; a ``[mean, std]`` pair (KID) logs its mean."""
    if isinstance(v, (list, tuple)) and len(v) == 2:
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _wait_for_a_later_second(log_dir: Path) -> None:
    """Sleep (at most a second) until a new event file would sort after every existing one."""
    seconds = [int(m.group(1)) for p in log_dir.glob("events.out.tfevents.*") if (m := _FILE_SECOND.match(p.name))]
    if seconds:
        newest = max(seconds)
        while int(time.time()) <= newest:
            time.sleep(min(1.0, newest + 1 - time.time() + 0.01))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "strerror", None) or exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _quiet_writer_threads() -> None:
    """Keep the event writer's background thread from printing a traceback when its write fails.

    The thread keeps the exception and the next call from the training thread
    raises it, where :class:`TensorBoardLog` turns it into one warning. Installed once.
    """
    previous = threading.excepthook
    if getattr(previous, "ganforge_tensorboard", False):
        return

    def hook(args):
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, Exception):
            return
        previous(args)

    hook.ganforge_tensorboard = True
    threading.excepthook = hook


class TensorBoardLog:
    """One run's TensorBoard writer.

    Args:
        log_dir: ``RUN/tensorboard``.
        start_step: the step training continues from (0 for a new run); events
            already written past it are purged.
    """

    def __init__(self, log_dir: str | Path, start_step: int = 0, flush_secs: int = 30):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard", f"needs the tensorboard package: {INSTALL_HINT}") from None
        _quiet_writer_threads()
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        purge = None
        if start_step > 0 and any(self.log_dir.glob("events.out.tfevents.*")):
            purge = start_step + 1
            _wait_for_a_later_second(self.log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge, flush_secs=flush_secs)

    @classmethod
    def open(cls, log_dir: str | Path, start_step: int = 0) -> TensorBoardLog | None:
        """The writer, or None (with one warning) when it cannot be created; ConfigError if the package is missing."""
        try:
            return cls(log_dir, start_step)
        except ConfigError:
            raise
        except Exception as exc:  # OSError from mkdir or the first event file, or what the writer raises
            log.warning("TensorBoard: cannot write %s (%s); training continues without the event log",
                        log_dir, _one_line(exc))
            return None

    def _failed(self, exc: BaseException) -> None:
        """Warn once and drop the writer: the event log must not stop training."""
        writer, self.writer = self.writer, None
        log.warning("TensorBoard: writing %s failed (%s); training continues without the event log",
                    self.log_dir, _one_line(exc))
        try:
            writer.close()
        except Exception:
            pass  # the same failure again

    def write(self, record: dict) -> None:
        """One ``metrics.jsonl`` record: training scalars, evaluation metrics, or a rollback."""
        if self.writer is None:
            return
        try:
            self._write(record)
        except Exception as exc:
            self._failed(exc)

    def _write(self, record: dict) -> None:
        step = record.get("step")
        if not isinstance(step, int):
            return
        if record.get("event") == "rollback":
            self.purge_after(step)
            return
        if record.get("event") == "eval" or "eval" in record:
            for key, value in record.items():
                if key not in _EVAL_META and (v := _scalar(value)) is not None:
                    self.writer.add_scalar(f"eval/{key}", v, step)
            return
        if "event" in record:
            return
        for key, value in record.items():
            if key != "step" and (v := _scalar(value)) is not None:
                self.writer.add_scalar(TAGS.get(key, f"train/{key}"), v, step)

    def purge_after(self, step: int) -> None:
        """Hide every event written so far past ``step`` (training went back to ``step``)."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        # The event SummaryWriter(purge_step=...) writes when it opens a file, written mid-file.
        self.writer._get_file_writer().add_event(
            Event(step=step + 1, session_log=SessionLog(status=SessionLog.START)))

    def add_grid(self, step: int, path: str | Path) -> None:
        """A saved sample grid PNG as the image ``samples`` at ``step``."""
        from PIL import Image

        if self.writer is None:
            return
        try:
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
            self.writer.add_image("samples", pixels, step, dataformats="HWC")
        except Exception as exc:
            self._failed(exc)

    def flush(self) -> None:
        if self.writer is not None:
            try:
                self.writer.flush()
            except Exception as exc:
                self._failed(exc)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception as exc:
                self._failed(exc)
