"""The evaluation pipeline: real-side reference set up once, then any registered metrics of generated images.

Every evaluation goes through here: ``ganforge eval`` (:func:`~ganforge.metrics.compute.compute_metrics`,
one evaluation), periodic evaluation during training (:func:`shared_evaluator`, the
same evaluator for the whole process) and ``eval-inpaint`` (:func:`inception_extractor`,
:func:`inception_stats` and the registry's metrics). What does not depend on the
generator is done once, in :class:`Evaluator`'s set-up:

* the real images are loaded (a seeded subset of ``n``, or the images of
  ``classes`` only) and their Inception statistics read from the one statistics
  cache (:mod:`ganforge.metrics.cache`) or computed and stored there, under one
  key scheme (:func:`real_inception_stats`);
* the Inception extractor is built (kept for the process with ``reuse``: no
  reload of the TorchScript file, no new warm-up of its executor), and on CUDA
  warmed up on blank images of the evaluation's batch shapes, so cuDNN's
  algorithm timing is charged to the set-up, not to the first evaluation;
* the domain classifier is loaded (``cls``) and the square root of the real
  covariance computed (``fid``), once per device.

Each evaluation then streams the generated images (:mod:`ganforge.metrics.fakes`)
through the sources the requested metrics need (raw generated features only when
a metric reads them; images stay on the device they come on) and calls the
metrics through :func:`~ganforge.metrics.catalog.compute_registered`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from ganforge.errors import ConfigError, DataError, WeightsError
from ganforge.metrics.cache import cached_stats, stats_key
from ganforge.metrics.classifier import dataset_key, get_domain_classifier
from ganforge.metrics.fakes import FakeReport, iter_fake_batches
from ganforge.metrics.inception import InceptionFeatures, locate_inception_weights, sha1_file
from ganforge.metrics.naming import class_subset, count_tag, protocol_string, result_split, small_sample_note
from ganforge.metrics.catalog import (
    ClassifierOutputs,
    FeaturePair,
    ImagePair,
    MetricOptions,
    compute_registered,
    get_metrics,
    needed_sources,
)
from ganforge.metrics.stats import FeatureStats


# ------------------------------------------------------------------ the real side

def _real_subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if images.shape[0] <= n:
        return images
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx]


def real_images_for(real: str, split: str, n: int, *, image_size: int | None = None,
                    channels: int | None = None, root: str | None = None, seed: int = 0,
                    require_n_real: bool = False,
                    classes: Iterable[int] | None = None) -> tuple[str, torch.Tensor]:
    """The real images an evaluation of ``n`` generated ones compares with: ``(name, uint8 (M, C, H, W))``.

    ``classes`` keeps only the images of those class ids (the filter of ``data.classes``,
    :func:`ganforge.data.subset.select`; ConfigError naming ``data.classes`` for an unknown
    class or an unlabelled data set). ``M = min(n, size of the (filtered) split)``; a larger
    split gives a random subset (seeded by ``seed``). ``require_n_real`` refuses a split
    smaller than ``n``. ``name`` is the split's, without the class filter.
    """
    from ganforge.data import load_dataset
    from ganforge.data.subset import select

    real_ds = load_dataset(real, split, image_size=image_size, channels=channels, root=root)
    name, classes = real_ds.name, class_subset(classes)
    # Only the class filter: data.limit makes the training data scarce, never the reference.
    images = select(real_ds, classes=classes).images
    if classes is not None and not images.shape[0]:
        raise ConfigError("data.classes", f"{name} ({split}) has no images of classes {classes} to compare with")
    if require_n_real and images.shape[0] < n:
        what = f"{split}, classes {classes}" if classes is not None else split
        raise ConfigError("n", f"{n} is more than the {images.shape[0]} images of {name} "
                               f"({what}); use at most {images.shape[0]}")
    return name, _real_subset(images, n, seed)


# Extractors kept for repeated evaluations in one process (training's periodic evaluation):
# building one loads the TorchScript file again, and its first forward passes pay the
# profiling executor's warm-up (and on CUDA cuDNN's algorithm choice) again.
_SHARED_EXTRACTORS: dict[tuple, Any] = {}


def inception_extractor(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        precision: str = "fp32", batch_size: int = 64, *, reuse: bool = False):
    """An :class:`InceptionFeatures`; with ``reuse``, the one already built in this process.

    Reused extractors are keyed by the weights file (resolved path and SHA-1, so
    a replaced file gives a new one), the device and the precision; the batch
    size is set on each call. A reused extractor keeps its weights on its
    device until :func:`clear_shared_extractors`.
    """
    if not reuse:
        return InceptionFeatures(weights, device, precision, batch_size)
    try:
        path = locate_inception_weights(weights)
        ident: tuple = (str(path.resolve()), sha1_file(path))
    except (WeightsError, OSError):
        ident = (str(weights), None)  # the constructor below raises the precise error
    key = (InceptionFeatures, *ident, str(torch.device(device)), precision)
    extractor = _SHARED_EXTRACTORS.get(key)
    if extractor is None:
        extractor = _SHARED_EXTRACTORS[key] = InceptionFeatures(weights, device, precision, batch_size)
    extractor.batch_size = int(batch_size)
    return extractor


def clear_shared_extractors() -> None:
    """Forget the extractors kept by ``inception_extractor(..., reuse=True)``."""
    _SHARED_EXTRACTORS.clear()


def inception_stats(extractor, images: torch.Tensor, key: dict[str, Any], *, keep: int = 0,
                    cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                    progress: Callable[[str], None] | None = None) -> FeatureStats:
    """Inception statistics of uint8 ``images (M, C, H, W)`` under cache ``key``: read, or computed and stored.

    The one way into the statistics cache: ``key`` comes from
    :func:`~ganforge.metrics.cache.stats_key` (its ``max_items`` must be ``keep``,
    the raw feature rows kept in the file).
    """
    say = progress or (lambda msg: None)
    m = int(images.shape[0])

    def compute() -> FeatureStats:
        st = FeatureStats(max_items=keep)
        for i, feats in enumerate(extractor.iter_features(images)):
            st.append(feats)
            if i % 20 == 0:
                say(f"real features: {st.count}/{m}")
        return st

    return cached_stats(key, compute, cache_dir, use_cache)


def real_inception_stats(extractor, real: str, split: str, real_images: torch.Tensor, *,
                         image_size: int | None = None, channels: int | None = None, seed: int = 0,
                         cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                         progress: Callable[[str], None] | None = None,
                         classes: Iterable[int] | None = None) -> FeatureStats:
    """Inception statistics of ``real_images (M, C, H, W)`` drawn from ``real``/``split``, cached.

    All raw features are kept (and part of the cache key), so one file serves
    FID, KID and precision/recall alike. ``classes``: the class filter the images
    were drawn under (:func:`real_images_for`); part of the key when given, absent
    from it otherwise (so every-class keys are those of earlier versions).
    """
    m = int(real_images.shape[0])
    classes = class_subset(classes)
    extra = {"classes": classes} if classes is not None else {}
    key = stats_key(dataset_key(real), split, m, image_size, channels, extractor.protocol, m, subset_seed=seed,
                    **extra)
    return inception_stats(extractor, real_images, key, keep=m, cache_dir=cache_dir, use_cache=use_cache,
                           progress=progress)


# ------------------------------------------------------------------ the evaluator

@dataclass
class Evaluation:
    """One evaluation's results.

    ``per_metric``: ``{metric name: {result key: value}}``; ``record``: every result
    key (registration order) with ``protocol``, ``n_fake``, ``n_real``, ``real``,
    ``seconds`` and, when they apply, ``classes``, ``notes`` and ``skipped``;
    ``primary``: ``(key, value, better)`` of the first requested metric's first key.
    """

    per_metric: dict[str, dict[str, Any]]
    record: dict[str, Any]
    primary: tuple[str, Any, str]
    notes: list[str] = field(default_factory=list)


class Evaluator:
    """Registered metrics of generated images against one real split, with the generator-independent work done once.

    Args:
        real, split, n: real data set (name or path) and split, and the number of
            generated images per evaluation (at most ``n`` real ones, seeded subset).
        metrics: names of registered metrics (:func:`~ganforge.metrics.catalog.metric_names`).
        image_size, channels, root: passed to ``load_dataset`` for the real images.
        device, precision, batch_size: Inception settings (``batch_size`` images per
            forward pass; larger generated batches are split).
        seed: seed of the real subset (part of the cache key) and of the KID subsets.
        kid_subsets, kid_subset_size, pr_k: protocol knobs of KID and precision/recall.
        cache_dir, use_cache, inception_weights, classifier_dir, progress: as in
            :func:`~ganforge.metrics.compute.compute_metrics`.
        require_n_real: refuse (ConfigError naming ``n``) a real split of fewer than ``n`` images.
        classes: compare with the split's images of these class ids only.
        split_name: how results name the real split (default ``split``; ``"folder"``
            for an image folder that has no split).
        reuse: share the extractor with the rest of the process (repeated evaluations).
        warmup: run the extractor on blank images of the evaluation's batch shapes
            during set-up (default: on CUDA only).

    Raises:
        ConfigError, DataError, WeightsError: as :func:`~ganforge.metrics.compute.compute_metrics`.
    """

    def __init__(self, real: str, split: str = "test", n: int = 10000, metrics: Iterable[str] = ("fid",), *,
                 image_size: int | None = None, channels: int | None = None, root: str | None = None,
                 device: str | torch.device = "cpu", precision: str = "fp32", batch_size: int = 64,
                 seed: int = 0, kid_subsets: int = 100, kid_subset_size: int = 1000, pr_k: int = 3,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                 inception_weights: str | os.PathLike | None = None,
                 classifier_dir: str | os.PathLike | None = None,
                 progress: Callable[[str], None] | None = None, require_n_real: bool = False,
                 classes: Iterable[int] | None = None, split_name: str | None = None,
                 reuse: bool = True, warmup: bool | None = None):
        names = [str(m).strip().lower() for m in metrics]
        self.metrics = get_metrics(names)
        self.requested = list(dict.fromkeys(names))
        if n < 2:
            raise ConfigError("n", f"need at least 2 images, got {n}")
        if batch_size < 1:
            raise ConfigError("batch_size", f"must be positive, got {batch_size}")
        t0 = time.perf_counter()
        self.say = progress or (lambda msg: None)
        self.n, self.split, self.seed, self.image_size = int(n), split, seed, image_size
        self.split_name = split_name or split
        self.batch_size = int(batch_size)
        self.real = f"{real}:{self.split_name}"
        self.classes = class_subset(classes)
        self.device = torch.device(device)
        self.options = MetricOptions(seed=seed, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, pr_k=pr_k)
        needs = needed_sources(self.metrics)
        self.real_name, real_images = real_images_for(real, split, n, image_size=image_size, channels=channels,
                                                      root=root, seed=seed, require_n_real=require_n_real,
                                                      classes=self.classes)
        self.n_real = int(real_images.shape[0])
        self.extractor = (inception_extractor(inception_weights, self.device, precision, batch_size, reuse=reuse)
                          if "inception" in needs else None)
        self.classifier, self.classifier_desc = None, None
        if "classifier" in needs:
            self.classifier, self.classifier_meta = get_domain_classifier(
                real, root=root, cache_dir=classifier_dir, device=device, progress=self.say)
            self.classifier_desc = (f"domain classifier {dataset_key(real)} "
                                    f"widths={self.classifier_meta['config']['widths']}")
        self.real_stats = None
        self._references: dict = {}  # FrechetReference per device, shared by every evaluation
        if self.extractor is not None:
            self.real_stats = real_inception_stats(
                self.extractor, real, self.split_name, real_images,
                image_size=image_size, channels=channels, seed=seed, cache_dir=cache_dir, use_cache=use_cache,
                progress=self.say, classes=self.classes)
            if "fid" in self.requested:  # the square root of the real covariance, once
                self.frechet_reference()
        self.real_classifier = self.classifier.predict(real_images) if self.classifier is not None else None
        self.real_images = real_images.cpu() if "images" in needs else None  # else dropped: not needed again
        self._image_cache: dict = {}  # what "images" metrics derive from the real images, once
        if warmup is None:
            warmup = self.device.type == "cuda"
        if warmup and self.extractor is not None:
            self.warm_up(tuple(real_images.shape[1:]))
        self.setup_seconds = time.perf_counter() - t0
        self.calls = 0  # evaluations so far

    def warm_up(self, image_shape: tuple[int, ...]) -> None:
        """Run the extractor twice (the TorchScript executor optimises on its second call) on blank uint8
        images ``(B, *image_shape)`` for each batch size ``B`` an evaluation of ``n`` images passes.

        Generated images have the real images' shape and come in multiples of the
        extractor's batch, so the evaluations then meet no new input shape.
        """
        sizes = [min(self.batch_size, self.n)]
        if self.n > self.batch_size and self.n % self.batch_size:
            sizes.append(self.n % self.batch_size)
        for size in sizes:
            blank = torch.zeros((size, *image_shape), dtype=torch.uint8, device=self.device)
            for _ in range(2):
                self.extractor(blank)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the set-up time includes the queued passes

    def frechet_reference(self, device: str | torch.device | None = None):
        """The real statistics as a :class:`~ganforge.metrics.fid.FrechetReference` (default: on the
        evaluator's device); built once per device and shared by every evaluation."""
        pair = FeaturePair(self.real_stats, self.real_stats, self._references)
        return pair.frechet_reference(device or self.device)

    def evaluate(self, fake) -> Evaluation:
        """Compute the metrics of ``n`` generated images.

        ``fake``: a folder, a callable ``f(b) -> (b, C, H, W)`` or an iterable of
        batches, float in [-1, 1] or uint8 (see :func:`~ganforge.metrics.fakes.iter_fake_batches`).
        """
        t0 = time.perf_counter()
        self.calls += 1
        report = FakeReport()
        # Raw generated features only when a metric reads them (KID, P/R); FID needs the moments alone.
        keep = self.n if any(m.raw_features for m in self.metrics if "inception" in m.needs) else 0
        fake_stats = FeatureStats(max_items=keep) if self.extractor is not None else None
        cls_feats, cls_logits, images = [], [], []
        n_fake = 0
        for batch in iter_fake_batches(fake, self.n, self.batch_size, report):
            for feats in (self.extractor.iter_features(batch) if fake_stats is not None else ()):
                fake_stats.append(feats)  # in chunks of the extractor's batch size
            if self.classifier is not None:
                f, lg = self.classifier.predict(batch)
                cls_feats.append(f)
                cls_logits.append(lg)
            if self.real_images is not None:
                images.append(batch.cpu())
            n_fake += batch.shape[0]
            self.say(f"generated images: {n_fake}/{self.n}")
        if n_fake < 2:
            raise DataError("fake", f"need at least 2 generated images, got {n_fake}")
        sources: dict[str, Any] = {}  # only those the metrics need
        if fake_stats is not None:
            sources["inception"] = FeaturePair(self.real_stats, fake_stats, self._references)
        if self.classifier is not None:
            real_f, real_lg = self.real_classifier
            sources["classifier"] = ClassifierOutputs(real_features=real_f, real_logits=real_lg,
                                                      fake_features=torch.cat(cls_feats),
                                                      fake_logits=torch.cat(cls_logits), meta=self.classifier_meta)
        if self.real_images is not None:
            sources["images"] = ImagePair(real=self.real_images, fake=_same_channels(images), cache=self._image_cache)
        # Fewer real images than generated ones: the name says so (fid10k_test5k).
        split = result_split(self.split_name, self.n_real, n_fake)
        per_metric = compute_registered(self.metrics, sources, count_tag(n_fake), split, self.options)
        record: dict[str, Any] = {k: v for result in per_metric.values() for k, v in result.items()}
        record.update(protocol=self.protocol(n_fake, "quantised" if report.quantised else "uint8"),
                      n_fake=n_fake, n_real=self.n_real, real=self.real, seconds=round(time.perf_counter() - t0, 1))
        if self.classes is not None:
            record["classes"] = self.classes
        notes = [small_sample_note(min(n_fake, self.n_real))] if "fid" in self.requested else []
        first = per_metric[self.requested[0]]
        key = next(iter(first))
        better = next(m.better for m in self.metrics if m.name == self.requested[0])
        if report.skipped:
            record["skipped"] = report.skipped
        return Evaluation(per_metric, record, (key, first[key], better), [note for note in notes if note])

    def protocol(self, n_fake: int, fake_source: str = "quantised") -> str:
        """The ``protocol`` entry of an evaluation of ``n_fake`` images."""
        o = self.options
        return protocol_string(n_fake, self.real_name, self.n_real, self.seed, self.image_size, self.extractor,
                               o.kid_subsets, o.kid_subset_size, o.pr_k, self.classifier_desc, self.classes,
                               fake_source)

    def __call__(self, fake) -> dict[str, Any]:
        """Evaluate generated images; returns the record (``{"fid<n>_<split>": value, "protocol", ...}``)."""
        return self.evaluate(fake).record


def _same_channels(batches: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate uint8 batches, grayscale ones replicated to 3 channels when some are in colour."""
    c = max(b.shape[1] for b in batches)
    return torch.cat([b.expand(-1, c, -1, -1) for b in batches])


_EVALUATORS: dict[tuple, Evaluator] = {}


def shared_evaluator(real: str, split: str, n: int, metrics: Iterable[str] = ("fid",), **kwargs: Any) -> Evaluator:
    """The :class:`Evaluator` for these arguments, built on first use and kept for the process.

    Keyed by every argument, by the registered metric objects (a metric registered
    again under the same name gets a new evaluator) and by the extractor itself (so
    a replaced weights file, another device or precision gives a new evaluator).
    Keyword arguments are those of :class:`Evaluator`.
    """
    chosen = tuple(get_metrics(metrics))
    extractor = None
    if "inception" in needed_sources(chosen):
        extractor = inception_extractor(kwargs.get("inception_weights"), kwargs.get("device", "cpu"),
                                        kwargs.get("precision", "fp32"), kwargs.get("batch_size", 64), reuse=True)

    def hashable(v):  # paths and devices by name; lists (classes) as tuples
        return str(v) if isinstance(v, (os.PathLike, torch.device)) else tuple(v) if isinstance(v, list) else v

    # Wherever None is accepted it means the default: passing it is the same evaluator as leaving it out.
    settings = {k: hashable(v) for k, v in kwargs.items() if k != "progress" and v is not None}
    names = tuple(dict.fromkeys(str(m).strip().lower() for m in metrics))
    key = (extractor, real, split, int(n), names, chosen, tuple(sorted(settings.items())))
    evaluator = _EVALUATORS.get(key)
    if evaluator is None:
        evaluator = _EVALUATORS[key] = Evaluator(real, split, n, names, reuse=True, **kwargs)
    return evaluator


def clear_evaluators() -> None:
    """Forget the evaluators kept by :func:`shared_evaluator` (their device memory is freed with them)."""
    _EVALUATORS.clear()
