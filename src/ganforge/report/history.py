"""A run's ``metrics.jsonl`` read back as one consistent history (no plotting here).

``metrics.jsonl`` holds three kinds of records, in the order they were written:

* training records, one per logged step: ``{"step", "images_seen", "skipped_steps",
  "train_seconds", "d_loss", "g_loss", "d_real", "d_fake", "images_per_s", ...}``;
* evaluation records: ``{"event": "eval", "step", "fid2k_test": ...}`` from training
  or ``ganforge eval``, and ``{"eval": "inpaint", "step", "inpaint/METHOD/METRIC": ...}``
  from ``ganforge eval-inpaint``;
* other events, e.g. ``{"event": "rollback", "step": S, "from_step": F}``.

A run that rolled back, or was killed and resumed from an older checkpoint, has
written some steps twice. The rule that makes its history single-valued: the
records of one timeline have increasing steps, so a training record whose step
is not above the previous one starts a new timeline from that step, and every
earlier training or evaluation record at that step or later is superseded. A
rollback event to step S supersedes every earlier record past S. Evaluations of
an old checkpoint appended afterwards (``ganforge eval --checkpoint``) do not
start a timeline; two evaluations of the same metric at the same step keep the
later one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ganforge.report import inputs

# Keys of an evaluation record that describe it rather than measure the generator.
EVAL_META_KEYS = frozenset({"step", "event", "eval", "train_seconds", "best", "n_fake", "n_real", "seconds",
                            "n", "hole_ratio", "seed", "cls_accuracy", "generator", "protocol", "real",
                            "masks", "split"})


@dataclass
class History:
    """The de-duplicated records of one run, each list in increasing step order.

    ``train``: training records. ``evals``: evaluation records (dicts as written).
    ``events``: other events (rollbacks...), in file order. ``torn``: lines that
    could not be parsed (a line being written when the file was read, say, or
    one too long, not UTF-8 or not JSON). ``truncated``: reading stopped at
    :data:`ganforge.report.inputs.MAX_METRICS_BYTES`. ``unreadable``: why the
    file could not be read at all (None when it was, or is missing).
    """

    train: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    torn: int = 0
    truncated: bool = False
    unreadable: str | None = None
    _columns: dict = field(default_factory=dict, repr=False, compare=False)

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of a training key, float arrays of equal length, records without it skipped.

        Computed once per key (figures ask for the same columns many times); the
        history must not change afterwards.
        """
        if key not in self._columns:
            pairs = [(r["step"], v) for r in self.train if (v := _number(r.get(key))) is not None]
            steps, values = zip(*pairs) if pairs else ((), ())
            self._columns[key] = (np.asarray(steps, dtype=float), np.asarray(values, dtype=float))
        return self._columns[key]

    def seconds_at(self, steps: np.ndarray) -> np.ndarray:
        """Training seconds at ``steps``, interpolated between logged steps (NaN when unknown)."""
        known, seconds = self.column("train_seconds")
        steps = np.asarray(steps, dtype=float)
        if known.size == 0:
            return np.full(steps.shape, np.nan)
        out = np.interp(steps, known, seconds)
        out[(steps < known[0]) & (steps > 0)] = np.nan  # before the first log: not measured
        out[steps == 0] = 0.0
        return out

    def train_keys(self) -> list[str]:
        """Numeric training keys, in first-seen order."""
        keys: dict[str, None] = {}
        for r in self.train:
            for k, v in r.items():
                if k != "step" and _number(v) is not None:
                    keys.setdefault(k)
        return list(keys)

    def eval_keys(self) -> list[str]:
        """Metric keys of the evaluation records (FID, KID, P/R, classifier and inpainting scores)."""
        keys: dict[str, None] = {}
        for r in self.evals:
            for k, v in r.items():
                if k not in EVAL_META_KEYS and metric_value(v) is not None:
                    keys.setdefault(k)
        return list(keys)

    def eval_series(self, key: str, records: list[dict] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one evaluation metric (for ``[mean, std]`` pairs, the mean), from
        ``records`` (default: every evaluation record)."""
        records = self.evals if records is None else records
        pairs = [(r["step"], metric_value(r.get(key))) for r in records if key in r]
        pairs = [(s, v) for s, v in pairs if v is not None]
        if not pairs:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*pairs)
        return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def metric_value(v) -> float | None:
    """A metric as one float: a number, or the mean of a ``[mean, std]`` pair (KID); else None."""
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return _number(v[0])
    return _number(v)


def kind(record: dict) -> str:
    """``"train"``, ``"eval"`` or ``"event"``."""
    if record.get("event") == "eval" or "eval" in record:
        return "eval"
    if "event" in record:
        return "event"
    return "train"


def _eval_signature(record: dict) -> tuple:
    """What makes two evaluation records the same measurement (the later one replaces the earlier)."""
    metrics = tuple(sorted(k for k in record if k not in EVAL_META_KEYS))
    return (record["step"], record.get("eval"), record.get("generator"), record.get("masks"),
            record.get("hole_ratio"), metrics)


def build_history(records: Iterable[dict]) -> History:
    """Apply the timeline rules of this module's docstring to records in file order."""
    h = History()
    for r in records:
        step = r.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        what = kind(r)
        if what == "train":
            if h.train and step <= h.train[-1]["step"]:  # a new timeline from ``step``
                _drop_from(h, step)
            h.train.append(r)
        elif what == "eval":
            sig = _eval_signature(r)
            h.evals = [e for e in h.evals if _eval_signature(e) != sig]
            h.evals.append(r)
        else:
            if r.get("event") == "rollback":
                _drop_from(h, step + 1)
            h.events.append(r)
    h.evals.sort(key=lambda e: e["step"])  # stable: same-step evaluations keep file order
    return h


def _drop_from(h: History, step: int) -> None:
    """Forget the training and evaluation records at ``step`` or later (a superseded timeline)."""
    while h.train and h.train[-1]["step"] >= step:
        h.train.pop()
    h.evals = [e for e in h.evals if e["step"] < step]


def read_history(path: str | Path, root: str | Path | None = None) -> History:
    """Read ``metrics.jsonl`` (missing file: empty history). Unparsable lines are counted, not fatal.

    The file must be a regular file inside ``root`` (default: its folder); lines
    are read with bounded length, and non-finite or implausibly long numbers
    read as no value (see :mod:`ganforge.report.inputs`). A file that cannot be
    read gives an empty history with ``unreadable`` set.
    """
    path = Path(path)
    records, torn, truncated = [], 0, False
    if os.path.lexists(path):
        try:
            with inputs.open_regular(path, Path(root) if root is not None else path.parent, 1 << 62) as f:
                for record, truncated in inputs.json_lines(f):
                    if isinstance(record, dict):
                        records.append(record)
                    elif not truncated and record is None:
                        torn += 1
        except inputs.Unreadable as exc:
            h = History(unreadable=str(exc))
            return h
        except OSError as exc:
            return History(unreadable=f"cannot read ({exc.strerror or type(exc).__name__})")
    h = build_history(records)
    h.torn, h.truncated = torn, truncated
    return h
