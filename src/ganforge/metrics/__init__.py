"""Evaluation metrics for generated and restored images.

Generation (distributions of images)::

    from ganforge.metrics import compute_metrics
    res = compute_metrics(generator_fn, real="fashion-mnist", split="test", n=10000)
    res["fid10k_test"], res["kid10k_test"], res["precision10k_test"], res["cls_score10k"]

Building blocks: :class:`InceptionFeatures` (standard FID network, uint8 in,
2048-d out), :class:`FeatureStats` (streaming mean/covariance),
:func:`frechet_distance` (numpy) and :class:`FrechetReference` (torch, a fixed
reference reused across calls), :func:`kernel_inception_distance`,
:func:`precision_recall`, the domain classifier and :func:`classifier_score`.
:class:`Evaluator` is the one evaluation pipeline: the real side set up once,
then any registered metrics of generated images, as often as asked (training's
periodic evaluation keeps one per process, :func:`shared_evaluator`;
:func:`compute_metrics` is one evaluation). Metrics are registered by name
(:func:`register_metric`, :mod:`ganforge.metrics.catalog`).

Restoration (pairs of images): :func:`psnr`, :func:`ssim`, :func:`l1`, each
optionally restricted to a mask.
"""

from ganforge.metrics.cache import cache_root, cached_stats, stats_key
from ganforge.metrics.classifier import (
    DomainClassifier,
    classifier_score,
    get_domain_classifier,
    load_classifier,
    save_classifier,
    train_classifier,
)
from ganforge.metrics.compute import append_jsonl, compute_metrics
from ganforge.metrics.fakes import iter_fake_batches
from ganforge.metrics.fid import FrechetReference, fid_from_features, frechet_distance, frechet_distance_torch
from ganforge.metrics.inception import (
    INCEPTION_SHA1,
    InceptionFeatures,
    load_inception,
    locate_inception_weights,
    quantize_images,
    verify_inception_weights,
)
from ganforge.metrics.kid import kernel_inception_distance
from ganforge.metrics.naming import count_tag
from ganforge.metrics.evaluator import Evaluator, clear_evaluators, shared_evaluator
from ganforge.metrics.prdc import precision_recall
from ganforge.metrics.catalog import metric_names, register_metric, unregister_metric
from ganforge.metrics import mode_coverage as _mode_coverage  # noqa: F401  (registers the modes metric)
from ganforge.metrics import ids as _ids  # noqa: F401  (registers the ids metric: P-IDS / U-IDS)
from ganforge.metrics.restoration import l1, mse, psnr, ssim, ssim_map
from ganforge.metrics.stats import FeatureStats

__all__ = [
    "INCEPTION_SHA1",
    "DomainClassifier",
    "Evaluator",
    "FeatureStats",
    "FrechetReference",
    "InceptionFeatures",
    "append_jsonl",
    "cache_root",
    "cached_stats",
    "classifier_score",
    "clear_evaluators",
    "compute_metrics",
    "count_tag",
    "fid_from_features",
    "frechet_distance",
    "frechet_distance_torch",
    "get_domain_classifier",
    "iter_fake_batches",
    "kernel_inception_distance",
    "l1",
    "load_classifier",
    "load_inception",
    "metric_names",
    "locate_inception_weights",
    "mse",
    "precision_recall",
    "psnr",
    "quantize_images",
    "register_metric",
    "save_classifier",
    "shared_evaluator",
    "ssim",
    "ssim_map",
    "stats_key",
    "train_classifier",
    "unregister_metric",
    "verify_inception_weights",
]
