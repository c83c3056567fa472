"""High-level evaluation: generated images against a real dataset, in one pass.

:func:`compute_metrics` is what ``ganforge eval`` calls. Result keys name the
protocol: the number of generated images (``10k`` = 10,000) and the real
split, e.g. for ``n=10000`` against ``split="test"``::

    fid10k_test               float   Inception FID
    kid10k_test               (mean, std) over 100 subsets of 1000 (see kid_subset_size for small n)
    precision10k_test, recall10k_test   improved P/R, k = 3
    cls_score10k              (mean, std) Inception-Score formula, domain classifier, 10 splits
    cls_fid10k_test           Frechet distance on the domain classifier's features
    cls_score_real_test       (mean, std) the score of the real images, for reference
    cls_accuracy              the domain classifier's test accuracy
    protocol                  extractor, resize, quantisation, precision, real sample

Each metric is a function in :mod:`ganforge.metrics.catalog`; other metrics
registered there (``@register_metric``) are computed by name like the built-ins.
The work is done by :class:`ganforge.metrics.evaluator.Evaluator`, the pipeline
periodic evaluation keeps for the whole run: one evaluation here is its set-up
plus one call, so both give the same numbers under the same names.

Real statistics (Inception) are cached on disk (:mod:`ganforge.metrics.cache`);
the domain classifier is trained once per dataset and cached
(:mod:`ganforge.metrics.classifier`). When the real split holds more than
``n`` images a random subset of ``n`` is used (seeded, part of the cache key).
When it holds fewer, ``compute_metrics(..., require_n_real=True)`` (what
``ganforge eval`` uses) refuses before computing anything; otherwise all real
images are used and the names say so: the real count follows the split when it
is smaller than the generated count, e.g. ``fid10k_test5k`` = 10k generated
against 5k test images. A name never claims more images than were used.

``classes=[9]`` (a run trained on ``data.classes``) compares with the split's
images of those classes only, through the filter training uses
(:func:`ganforge.data.subset.select`); ``data.limit`` does not shrink the
reference. The rules above then apply to that filtered split, the statistics
cache key carries the classes, and the result has a ``classes`` entry and says
them in ``protocol``. Without ``classes`` nothing changes: same numbers, same
cache keys, same records.

The FID a perfect generator would reach (train against test images of the same
data set) is measured by ``benchmarks/fid_floor.py`` (see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from ganforge.metrics.evaluator import Evaluator

# The default set of `ganforge eval`. Not every registered metric: cls_fid is cls's Frechet
# distance alone (periodic evaluation's CPU proxy; cls reports it too), and modes needs stacked data.
METRICS = ("fid", "kid", "pr", "cls")


def compute_metrics(fake, real: str = "fashion-mnist", split: str = "test",
                    metrics: Iterable[str] = METRICS, n: int = 10000, *,
                    image_size: int | None = None, channels: int | None = None,
                    root: str | None = None, device: str | torch.device = "cpu",
                    precision: str = "fp32", batch_size: int = 64, seed: int = 0,
                    kid_subsets: int = 100, kid_subset_size: int = 1000, pr_k: int = 3,
                    cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                    inception_weights: str | os.PathLike | None = None,
                    classifier_dir: str | os.PathLike | None = None,
                    progress: Callable[[str], None] | None = None,
                    require_n_real: bool = False,
                    classes: Iterable[int] | None = None,
                    split_name: str | None = None) -> dict[str, Any]:
    """Evaluate generated images against a real dataset split.

    Args:
        fake: folder of images, callable ``f(b)`` or iterable of batches
            ``(B, C, H, W)`` (uint8, or float in [-1, 1]); see
            :func:`~ganforge.metrics.fakes.iter_fake_batches`.
        real: dataset name or path, as accepted by ``ganforge.data.load_dataset``.
        split: real split ("test", "train" or "all").
        metrics: names of registered metrics (:func:`~ganforge.metrics.catalog.metric_names`;
            built in: ``fid``, ``kid``, ``pr``, ``cls``). Only the feature sources they
            need (Inception, domain classifier, pixels) are computed.
        n: number of generated images (and at most this many real ones).
        image_size, channels, root: passed to ``load_dataset`` for the real images;
            use the generator's resolution so both sets are resized alike.
        device, precision, batch_size: feature extraction settings
            (see :class:`~ganforge.metrics.inception.InceptionFeatures`).
        seed: seed of the real subset and the KID subsets.
        cache_dir: directory of cached real statistics (default ``<cache root>/stats``).
        use_cache: False recomputes real statistics and writes nothing.
        inception_weights: path of the Inception file (default: see ``inception``).
        classifier_dir: where domain classifiers are cached
            (default ``<cache root>/classifiers``).
        progress: called with short status lines.
        require_n_real: refuse (ConfigError naming ``n``) a real split with fewer
            than ``n`` images, instead of using all of them under a name that
            carries the smaller real count.
        classes: compare with the split's images of these class ids only (a run
            trained on ``data.classes``); ``n`` and ``require_n_real`` then apply to
            that filtered split. None: every class.
        split_name: how names call the real split (default ``split``); ``"folder"``
            for an image folder without splits.

    Returns:
        A JSON-serialisable dict with the keys described in the module doc,
        plus ``n_fake``, ``n_real``, ``real``, ``seconds``, ``classes`` (sorted)
        when given, ``notes`` (e.g. the small-sample bias of FID) and ``skipped``
        (unusable files of a folder of generated images) when there are any.

    Raises:
        ConfigError: unknown metric name, ``n`` below 2, or (``require_n_real``)
            more than the real split holds.
        DataError: unreadable real or generated images.
        WeightsError: the Inception weights are missing or wrong.
    """
    t0 = time.perf_counter()
    evaluator = Evaluator(real, split, n, metrics, image_size=image_size, channels=channels, root=root,
                          device=device, precision=precision, batch_size=batch_size, seed=seed,
                          kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, pr_k=pr_k,
                          cache_dir=cache_dir, use_cache=use_cache, inception_weights=inception_weights,
                          classifier_dir=classifier_dir, progress=progress, require_n_real=require_n_real,
                          classes=classes, split_name=split_name, reuse=False, warmup=False)
    result = evaluator.evaluate(fake)
    out = dict(result.record, seconds=round(time.perf_counter() - t0, 1))  # set-up included: one evaluation
    if result.notes:
        out["notes"] = result.notes
    return out


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.generic, torch.Tensor)):
        return _jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None  # strict JSON has no NaN/Inf
    if isinstance(v, Path):
        return str(v)
    return v


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line (tuples -> lists, numpy -> Python, NaN -> null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_jsonable(record), allow_nan=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
