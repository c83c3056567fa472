"""Evaluation during training (``train.eval_every``): registered metrics of the EMA generator, and a ``best`` checkpoint.

Every ``eval_every`` steps the generator (EMA when present) draws ``train.eval_n``
images; the metrics of ``train.eval_metrics`` (default FID) against the data set's
test split (or the configured split for folders) are appended to ``metrics.jsonl``,
every result key of each, and when the first metric's first result is the best so
far (lower or higher, as the metric declares) the current checkpoint is copied to
``checkpoints/best/`` (with ``best.json``), which checkpoint pruning never touches.
Evaluation runs under a forked RNG so that runs with and without it train identically.

The protocol is that of ``ganforge eval`` (same extractor, quantisation, real
subset and statistics cache), through a per-process
:class:`~ganforge.metrics.evaluator.Evaluator` (:func:`~ganforge.metrics.evaluator.shared_evaluator`):
the Inception network, the real statistics and the square root of their covariance
are set up at the first evaluation and reused by the next ones, and generated images
stay on the training device from generator to feature statistics.

A run trained on some classes (``data.classes``) is compared with the test
images of those classes only (all of them: ``data.limit`` limits training data,
not the reference), and a conditional generator draws its labels from those
classes (:func:`ganforge.sampling.class_labels`); its records carry ``classes``.
When ``train.eval_n`` is more than that reference holds, all of it is used and
the name says so (``fid2k_test1k``: 2,000 generated against 1,000 real images).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from ganforge import checkpoint as ckpt
from ganforge.atomic import replace_dir
from ganforge.data.sources import canonical_name
from ganforge.metrics.evaluator import shared_evaluator
from ganforge.sampling import generate

log = logging.getLogger(__name__)

# Images per generator call on CUDA. The Inception batch stays at 250: its
# activation memory grows with the batch and shares the device with training.
CUDA_GENERATE_BATCH = 500
CUDA_INCEPTION_BATCH = 250

def best_so_far(run_dir: Path, key: str | None = None) -> float | None:
    """The value in ``checkpoints/best/best.json``; None when absent, unreadable or (given ``key``) of another metric.

    A best kept under another result key (other metrics or another ``eval_n``) is
    not comparable, so the next evaluation replaces it.
    """
    path = Path(run_dir) / "checkpoints" / "best" / "best.json"
    try:
        best = json.loads(path.read_text(encoding="utf-8"))
        if key is not None and best.get("metric", key) != key:
            return None
        return float(best["value"] if "value" in best else best["fid"])  # "fid" alone: written before "value"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _primary_value(value) -> float | None:
    """A result as one comparable number: ``(mean, std)`` by its mean; None when not a finite number."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _keep_best(trainer, value: float, key: str, better: str = "lower") -> None:
    root = trainer.run_dir / "checkpoints"
    current = root / ckpt.step_dir_name(trainer.step)
    if not current.is_dir():
        current = trainer.save()
    tmp = root / f".tmp-best-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(current, tmp)
    best = {"metric": key, "value": value, "better": better, "step": trainer.step}
    if key.startswith("fid"):
        best["fid"] = value  # the field readers of earlier best.json files look for
    (tmp / "best.json").write_text(json.dumps(best), encoding="utf-8")
    replace_dir(tmp, root / "best")


def _warm_up_generator(model, cfg, device: torch.device) -> float:
    """Generate one evaluation batch and wait for it; returns the seconds taken.

    The generator meets the evaluation's batch shape for the first time here:
    with ``cudnn.benchmark`` (the training plan's default on CUDA) the first
    call times cuDNN's algorithms, a one-off cost that belongs with the
    evaluator's set-up, not with the first evaluation's ``seconds``.
    """
    t0 = time.perf_counter()
    n = min(CUDA_GENERATE_BATCH, cfg.train.eval_n)
    for _ in generate(model, cfg, n, seed=cfg.train.seed, device=device, batch_size=CUDA_GENERATE_BATCH):
        pass
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def auto_eval_metrics(cfg, device: torch.device) -> tuple[list[str], str]:
    """``train.eval_metrics`` as given, or for ``[auto]`` the metric that fits the device, with the reason.

    FID on a CPU costs more than the training it watches (README, "Evaluation"), so a
    CPU run of a labelled named data set is watched with the domain classifier's
    Frechet distance (``cls_fid``: seconds; the classifier is trained once per data
    set and cached). FID-10k stays
    the reference: ``ganforge eval RUN`` at the end, or ``train.eval_metrics=[fid]``.
    """
    names = list(cfg.train.eval_metrics)
    if [n.strip().lower() for n in names] != ["auto"]:
        return names, "train.eval_metrics"
    if device.type != "cpu":
        return ["fid"], f"auto: FID on {device.type}"
    if canonical_name(cfg.data.dataset):
        return ["cls_fid"], "auto: the domain classifier's Frechet distance on CPU (FID costs minutes there)"
    return ["fid"], (f"auto: FID (no domain classifier for {cfg.data.dataset}); at train.eval_n="
                     f"{cfg.train.eval_n} it reads higher than FID-10k (FID is biased upward at small n)")


def generator_metrics(model, cfg, device: torch.device, truncation: float | None = None,
                      metrics: list[str] | None = None):
    """Registered metrics of ``model`` (a generator) under the periodic-evaluation protocol of ``cfg``.

    Draws ``cfg.train.eval_n`` images with ``cfg.train.seed`` under a forked RNG
    (the caller's random streams are left as they were) and compares them with
    the data set's test split (or ``cfg.data.split`` for folders), of the classes
    ``cfg.data.classes`` only when it is set. ``metrics`` defaults to
    ``cfg.train.eval_metrics``. Returns the :class:`~ganforge.metrics.evaluator.Evaluation`
    and timings in seconds: ``seconds`` (generation, extraction, statistics and
    metrics, ending with the host reading the values) and, at the first evaluation
    of this process, ``setup`` (building the evaluator, and on CUDA one warm-up
    batch of the generator). ``truncation`` generates with the truncation trick.

    """
    split = "test" if canonical_name(cfg.data.dataset) else cfg.data.split
    names, why = (list(metrics), "asked") if metrics is not None else auto_eval_metrics(cfg, device)
    was_training = model.training
    model.eval()
    cuda = device.type == "cuda"
    devices = [device.index or 0] if cuda else []
    try:
        with torch.random.fork_rng(devices=devices):
            # (the names were checked against the registry when training started: Task.check_config)
            evaluator = shared_evaluator(cfg.data.dataset, split, cfg.train.eval_n, names,
                                         image_size=cfg.data.image_size, channels=cfg.data.channels,
                                         root=cfg.data.root, device=device, classes=cfg.data.classes,
                                         batch_size=CUDA_INCEPTION_BATCH if cuda else 64)
            timing = {}
            if evaluator.calls == 0:  # the first evaluation of this process: report the set-up apart
                log.info("periodic evaluation: %s (%s)", ", ".join(names), why)
                warm = _warm_up_generator(model, cfg, device) if cuda else 0.0
                timing["setup"] = evaluator.setup_seconds + warm
            t0 = time.perf_counter()
            stream = generate(model, cfg, cfg.train.eval_n, seed=cfg.train.seed, device=device,
                              batch_size=CUDA_GENERATE_BATCH if cuda else 256, truncation=truncation)
            result = evaluator.evaluate(stream)
            _primary_value(result.primary[1])  # the host reads a value: the device work is done
            timing["seconds"] = time.perf_counter() - t0
    finally:
        model.train(was_training)
    return result, timing


def generator_fid(model, cfg, device: torch.device, truncation: float | None = None) -> tuple[str, float, dict]:
    """FID of ``model`` under the periodic-evaluation protocol: ``(key, value, timing)`` (see :func:`generator_metrics`)."""
    result, timing = generator_metrics(model, cfg, device, truncation, metrics=["fid"])
    key, value, _ = result.primary
    return key, float(value), timing


def evaluate_during_training(trainer) -> dict:
    """Evaluate now; log it; keep the best checkpoint. Returns the metrics record.

    A task drawing from noise is scored by ``train.eval_metrics`` through the metric
    registry; any other task scores itself (:meth:`~ganforge.tasks.base.Task.evaluate`,
    e.g. inpainting's restoration metrics on a fixed held-out batch). The record holds
    every result key, ``eval_seconds`` (one evaluation: generation, extraction,
    statistics, metrics), at the first evaluation of a process ``eval_setup_seconds``
    (extractor, real statistics and their square root), ``classes`` when the reference
    is restricted to ``data.classes``, and ``best`` when this evaluation is the best so
    far by the primary result (lower or higher as its metric declares).
    """
    model = trainer.published_generator()
    if trainer.task.from_noise:
        result, timing = generator_metrics(model, trainer.cfg, trainer.device)
        values = {k: v for per in result.per_metric.values() for k, v in per.items()}
        key, value, better = result.primary
    else:
        t0 = time.perf_counter()
        scores = trainer.task.evaluate(model, trainer.device)
        timing = {"seconds": time.perf_counter() - t0}
        values, key, better = scores.values, scores.primary, scores.better
        value = values[key]
    record = {"step": trainer.step, "event": "eval", **values, "train_seconds": round(trainer.clock.total, 3),
              "eval_seconds": round(timing["seconds"], 3)}
    if "setup" in timing:
        record["eval_setup_seconds"] = round(timing["setup"], 3)
    if trainer.cfg.data.classes is not None:  # the number means "against these classes' images"
        record["classes"] = sorted(trainer.cfg.data.classes)
    value = _primary_value(value)
    best = best_so_far(trainer.run_dir, key)
    if value is not None and (best is None or (value < best if better == "lower" else value > best)):
        _keep_best(trainer, value, key, better)
        record["best"] = True
    trainer.metrics.write(record)
    shown = "nan" if value is None else f"{value:.4g}"
    log.info("step %d: %s = %s (%.1f s)%s", trainer.step, key, shown, timing["seconds"],
             " (best)" if record.get("best") else "")
    return record
