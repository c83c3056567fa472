"""Rebuilding a fine-tuning run's transfer plan when ``RUN/transfer.json`` is lost.

Resuming needs to know which parameters were loaded from ``train.init_from``
(they form the optimizer group with the learning-rate multiplier), not the
weights themselves, which are in the run's checkpoints. Two other records
say it, so resuming never needs the source again:

1. the ``init_from`` event at the top of ``metrics.jsonl``: per network, how
   many state entries were loaded and the names that were re-initialised;
2. the newest valid checkpoint's optimizer groups: a network whose only group
   is ``loaded`` was loaded whole, one whose only group is ``new`` was not
   loaded. A network with both (a partial load) cannot be told from these alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from torch import nn

from ganforge import checkpoint as ckpt

log = logging.getLogger(__name__)

MAX_EVENT_LINES = 64  # the event is written before the first training record
MAX_LINE_BYTES = 1 << 20


def _init_event(metrics: Path) -> dict | None:
    """The ``init_from`` event of ``metrics.jsonl`` (None when absent or unreadable)."""
    try:
        with open(metrics, "rb") as f:
            for _ in range(MAX_EVENT_LINES):
                line = f.readline(MAX_LINE_BYTES)
                if not line:
                    return None
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("event") == "init_from":
                    return record
    except OSError:
        return None
    return None


def _from_event(event: dict, modules: dict[str, nn.Module], plan) -> bool:
    counts, reinit = event.get("loaded"), event.get("reinitialised") or {}
    if not isinstance(counts, dict) or not isinstance(reinit, dict):
        return False
    modules = {**modules, "G_ema": modules["G"]}  # the EMA copy has G's names
    for name, module in modules.items():
        n = counts.get(name)
        if not n:
            continue
        names = list(module.state_dict())
        skip = reinit.get(name) or []
        if not isinstance(skip, list) or not isinstance(n, int):
            return False
        loaded = [k for k in names if k not in set(skip)]
        if len(loaded) != n:  # another model than the one the event describes
            return False
        plan.loaded[name], plan.reinitialised[name] = loaded, [k for k in names if k in set(skip)]
    for key in ("source", "kind", "sha256"):
        if isinstance(event.get(key), str):
            setattr(plan, key, event[key])
    if isinstance(event.get("source_step"), int):
        plan.source_step = event["source_step"]
    return "G" in plan.loaded


def _from_checkpoint(run_dir: Path, modules: dict[str, nn.Module], plan) -> bool:
    c = ckpt.find_latest(run_dir)
    if c is None:
        return False
    for name, opt in (("G", "opt_g"), ("D", "opt_d")):
        groups = {g.get("name") for g in c.state["optim"][opt]["param_groups"] if isinstance(g, dict)}
        if groups == {"loaded"}:
            plan.loaded[name] = list(modules[name].state_dict())
            plan.reinitialised[name] = []
        elif groups != {"new"}:  # a partial load, or not a fine-tuning run's optimizer
            return False
    plan.kind = "run's own checkpoint"
    return "G" in plan.loaded


def rebuild_plan(run_dir: str | Path, modules: dict[str, nn.Module], plan):
    """Fill ``plan`` (a fresh ``TransferPlan``) from the run's own records; returns it, or None if they
    do not say which parameters were loaded. ``modules``: ``{"G": G, "D": D}`` as built for this run."""
    run_dir = Path(run_dir)
    event = _init_event(run_dir / "metrics.jsonl")
    for how, rebuild in (("the init_from event of metrics.jsonl", lambda: event is not None
                          and _from_event(event, modules, plan)),
                         ("the newest checkpoint's optimizer groups", lambda: _from_checkpoint(run_dir, modules, plan))):
        plan.loaded, plan.reinitialised = {}, {}
        if rebuild():
            log.warning("%s is missing: the layers loaded from %s are taken from %s", run_dir / "transfer.json",
                        plan.source, how)
            return plan
    return None
