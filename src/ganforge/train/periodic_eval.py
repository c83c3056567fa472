"""Evaluation during training (``train.eval_every``): FID of the EMA generator, and a ``best`` checkpoint.

Every ``eval_every`` steps the generator (EMA when present) draws ``train.eval_n``
images, their FID against the data set's test split (or the configured split for
folders) is appended to ``metrics.jsonl``, and when it is the lowest so far the
current checkpoint is copied to ``checkpoints/best/`` (with ``best.json``), which
checkpoint pruning never touches. Evaluation runs under a forked RNG so that
runs with and without it train identically.

The protocol is that of ``ganforge eval`` (same extractor, quantisation, real
subset and statistics cache), through a per-process
:class:`~ganforge.metrics.tracker.FIDMonitor`: the Inception network, the real
statistics and the square root of their covariance are set up at the first
evaluation and reused by the next ones, and generated images stay on the
training device from generator to feature statistics.

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

from ganforge.data.sources import canonical_name
from ganforge import checkpoint as ckpt

log = logging.getLogger(__name__)

# Images per generator call on CUDA. The Inception batch stays at 250: its
# activation memory grows with the batch and shares the device with training.
CUDA_GENERATE_BATCH = 500
CUDA_INCEPTION_BATCH = 250

def best_so_far(run_dir: Path) -> float | None:
    path = Path(run_dir) / "checkpoints" / "best" / "best.json"
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["fid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _keep_best(trainer, fid: float, key: str) -> None:
    root = trainer.run_dir / "checkpoints"
    current = root / ckpt.step_dir_name(trainer.step)
    if not current.is_dir():
        current = trainer.save()
    tmp = root / f".tmp-best-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(current, tmp)
    (tmp / "best.json").write_text(json.dumps({"fid": fid, "metric": key, "step": trainer.step}), encoding="utf-8")
    ckpt.replace_dir(tmp, root / "best")


def _warm_up_generator(model, cfg, device: torch.device) -> float:
    """Generate one evaluation batch and wait for it; returns the seconds taken.

    The generator meets the evaluation's batch shape for the first time here:
    with ``cudnn.benchmark`` (the training plan's default on CUDA) the first
    call times cuDNN's algorithms, a one-off cost that belongs with the
    monitor's set-up, not with the first evaluation's ``seconds``.
    """
    from ganforge.sampling import generate

    t0 = time.perf_counter()
    n = min(CUDA_GENERATE_BATCH, cfg.train.eval_n)
    for _ in generate(model, cfg, n, seed=cfg.train.seed, device=device, batch_size=CUDA_GENERATE_BATCH):
        pass
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def generator_fid(model, cfg, device: torch.device, truncation: float | None = None) -> tuple[str, float, dict]:
    """FID of ``model`` (a generator) under the periodic-evaluation protocol of ``cfg``.

    Draws ``cfg.train.eval_n`` images with ``cfg.train.seed`` under a forked RNG
    (the caller's random streams are left as they were) and compares them with
    the data set's test split (or ``cfg.data.split`` for folders), of the classes
    ``cfg.data.classes`` only when it is set. Returns the
    result key (``fid10k_test``, ...), the value, and timings in seconds:
    ``seconds`` (generation, extraction, statistics and distance, ending with
    the one host synchronisation that reads the value) and, at the first
    evaluation of this process, ``setup`` (building the monitor, and on CUDA
    one warm-up batch of the generator).
    ``truncation`` generates with the truncation trick (see ``ganforge.sampling``).
    """
    from ganforge.metrics.tracker import shared_fid_monitor
    from ganforge.sampling import generate

    split = "test" if canonical_name(cfg.data.dataset) else cfg.data.split
    was_training = model.training
    model.eval()
    cuda = device.type == "cuda"
    devices = [device.index or 0] if cuda else []
    try:
        with torch.random.fork_rng(devices=devices):
            monitor = shared_fid_monitor(cfg.data.dataset, split, cfg.train.eval_n,
                                         image_size=cfg.data.image_size, channels=cfg.data.channels,
                                         root=cfg.data.root, device=device, classes=cfg.data.classes,
                                         batch_size=CUDA_INCEPTION_BATCH if cuda else 64)
            timing = {}
            if monitor.calls == 0:  # the first evaluation of this process: report the set-up apart
                warm = _warm_up_generator(model, cfg, device) if cuda else 0.0
                timing["setup"] = monitor.setup_seconds + warm
            t0 = time.perf_counter()
            stream = generate(model, cfg, cfg.train.eval_n, seed=cfg.train.seed, device=device,
                              batch_size=CUDA_GENERATE_BATCH if cuda else 256, truncation=truncation)
            result = monitor(stream)
            key = next(k for k in result if k.startswith("fid"))
            fid = float(result[key])  # the host reads the value: the device work is done
            timing["seconds"] = time.perf_counter() - t0
    finally:
        model.train(was_training)
    return key, fid, timing


def evaluate_during_training(trainer) -> dict:
    """Compute FID now; log it; keep the best checkpoint. Returns the metrics record.

    The record holds ``eval_seconds`` (one evaluation: generation, extraction,
    statistics, distance), at the first evaluation of a process
    ``eval_setup_seconds`` (extractor, real statistics and their square root),
    and ``classes`` when the reference is restricted to ``data.classes``.
    """
    from ganforge.train.distributed import unwrap

    model = trainer.ema.model if trainer.ema is not None else unwrap(trainer.G)
    if not trainer.task.from_noise:
        return _task_evaluation(trainer, model)
    key, fid, timing = generator_fid(model, trainer.cfg, trainer.device)
    record = {"step": trainer.step, "event": "eval", key: fid, "train_seconds": round(trainer.clock.total, 3),
              "eval_seconds": round(timing["seconds"], 3)}
    if "setup" in timing:
        record["eval_setup_seconds"] = round(timing["setup"], 3)
    if trainer.cfg.data.classes is not None:  # the number means "against these classes' images"
        record["classes"] = sorted(trainer.cfg.data.classes)
    best = best_so_far(trainer.run_dir)
    if best is None or fid < best:
        _keep_best(trainer, fid, key)
        record["best"] = True
    trainer.metrics.write(record)
    log.info("step %d: %s = %.3f (%.1f s)%s", trainer.step, key, fid, timing["seconds"],
             " (best)" if record.get("best") else "")
    return record


def _task_evaluation(trainer, model) -> dict:
    """A task that does not draw from noise scores itself (:meth:`~ganforge.tasks.base.Task.evaluate`)."""
    t0 = time.perf_counter()
    result = trainer.task.evaluate(model, trainer.device)
    value = float(result.values[result.primary])
    record = {"step": trainer.step, "event": "eval", **result.values,
              "train_seconds": round(trainer.clock.total, 3), "eval_seconds": round(time.perf_counter() - t0, 3)}
    best = best_so_far(trainer.run_dir)
    sign = 1.0 if result.lower_is_better else -1.0
    if best is None or sign * value < sign * best:
        _keep_best(trainer, value, result.primary)
        record["best"] = True
    trainer.metrics.write(record)
    log.info("step %d: %s = %.4f (%.1f s)%s", trainer.step, result.primary, value, record["eval_seconds"],
             " (best)" if record.get("best") else "")
    return record
