"""High-level evaluation: generated images against a real dataset, in one pass.

:func:`compute_metrics` is what ``ganforge eval`` calls. Result keys name the
protocol: the number of generated images (``10k`` = 10,000) and the real
split, e.g. for ``n=10000`` against ``split="test"``::

    fid10k_test               float   Inception FID
    kid10k_test               (mean, std) over 100 subsets of 1000
    precision10k_test, recall10k_test   improved P/R, k = 3
    cls_score10k              (mean, std) Inception-Score formula, domain classifier, 10 splits
    cls_fid10k_test           Frechet distance on the domain classifier's features
    cls_score_real_test       (mean, std) the score of the real images, for reference
    cls_accuracy              the domain classifier's test accuracy
    protocol                  extractor, resize, quantisation, precision, real sample

Each metric is a function in :mod:`ganforge.metrics.registry`; other metrics
registered there (``@register_metric``) are computed by name like the built-ins.

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

FID-10k of Fashion-MNIST train (random 10k) against test (10k) is 2.52
(KID ~0): that is the floor a perfect generator would reach.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from ganforge.data.folder import IMAGE_EXTENSIONS
from ganforge.errors import ConfigError, DataError, WeightsError
from ganforge.metrics.cache import cached_stats, stats_key
from ganforge.metrics.classifier import dataset_key, get_domain_classifier
from ganforge.metrics.inception import InceptionFeatures, as_uint8_batch, locate_inception_weights, sha1_file
from ganforge.metrics.registry import (
    ClassifierOutputs,
    FeaturePair,
    MetricOptions,
    get_metrics,
    metric_names,
    needed_sources,
)
from ganforge.metrics.stats import FeatureStats

METRICS = metric_names()  # the built-in metrics ("fid", "kid", "pr", "cls"): the default set


def count_tag(n: int) -> str:
    """``10000 -> "10k"``, ``50000 -> "50k"``, ``2500 -> "2500"``."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def iter_image_folder(path: str | os.PathLike, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """Stream a folder of images (recursively, sorted) as uint8 batches ``(B, C, H, W)``.

    Grayscale files give 1 channel, everything else RGB; a batch that mixes
    both is promoted to RGB. All images must have the same size.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "not a directory of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(root, f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found")
    size = None
    for start in range(0, len(files), batch_size):
        arrays = []
        for f in files[start:start + batch_size]:
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if im.mode in ("1", "L", "I;16", "I") else "RGB")
                    a = np.asarray(im, dtype=np.uint8)
            except OSError as exc:
                raise DataError(f, f"cannot read image: {exc}") from exc
            size = size or a.shape[:2]
            if a.shape[:2] != size:
                raise DataError(f, f"size {a.shape[1]}x{a.shape[0]} differs from {size[1]}x{size[0]}")
            arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        c = max(a.shape[0] for a in arrays)
        yield torch.from_numpy(np.stack([np.broadcast_to(a, (c,) + a.shape[1:]) for a in arrays]))


def iter_fake_batches(fake, n: int, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """Up to ``n`` generated images as uint8 batches, from any supported source.

    Args:
        fake: a folder of images (str / path); a callable ``f(b) -> (b, C, H, W)``
            called until ``n`` images are produced; or an iterable of batches.
            Float batches are taken as [-1, 1] and quantised to uint8 exactly
            like saved images (:func:`ganforge.metrics.inception.quantize_images`).
        n: stop after this many images.

    Batches stay on the device they come on (a generator's batches are
    quantised there and go to the extractor without a trip through the host).
    """
    if isinstance(fake, (str, os.PathLike)):
        source: Iterable = iter_image_folder(fake, batch_size)
    elif callable(fake):
        def gen():
            left = n
            while left > 0:
                yield fake(min(batch_size, left))
                left -= batch_size
        source = gen()
    else:
        source = fake
    seen = 0
    for batch in source:
        batch = as_uint8_batch(batch)[: n - seen]
        if batch.shape[0]:
            seen += batch.shape[0]
            yield batch
        if seen >= n:
            return


def _real_subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if images.shape[0] <= n:
        return images
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx]


def class_subset(classes: Iterable[int] | None) -> list[int] | None:
    """``classes`` as evaluation keys and records hold them: sorted ids, or None for every class."""
    return None if classes is None else sorted(int(c) for c in classes)


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


# Extractors kept for repeated evaluations in one process (training's periodic FID):
# building one loads 87 MB of TorchScript, and its first forward passes pay the
# profiling executor's warm-up (and on CUDA cuDNN's algorithm choice) again.
_SHARED_EXTRACTORS: dict[tuple, Any] = {}


def inception_extractor(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        precision: str = "fp32", batch_size: int = 64, *, reuse: bool = False):
    """An :class:`InceptionFeatures`; with ``reuse``, the one already built in this process.

    Reused extractors are keyed by the weights file (resolved path and SHA-1, so
    a replaced file gives a new one), the device and the precision; the batch
    size is set on each call. A reused extractor keeps its weights (~95 MB) on
    its device until :func:`clear_shared_extractors`.
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


def append_features(stats: FeatureStats, extractor, images: torch.Tensor) -> None:
    """Extract features of uint8 ``images (N, C, H, W)`` in chunks of the extractor's batch size into ``stats``."""
    for feats in extractor.iter_features(images):
        stats.append(feats)


def real_inception_stats(extractor, real: str, split: str, real_images: torch.Tensor, *,
                         image_size: int | None = None, channels: int | None = None, seed: int = 0,
                         cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                         progress: Callable[[str], None] | None = None,
                         classes: Iterable[int] | None = None) -> FeatureStats:
    """Inception statistics of ``real_images (M, C, H, W)``: from the disk cache or computed (and stored).

    All raw features are kept (and part of the cache key), so one file serves
    FID, KID and precision/recall alike. ``classes``: the class filter the images
    were drawn under (:func:`real_images_for`); part of the key when given, absent
    from it otherwise (so every-class keys are those of earlier versions).
    """
    say = progress or (lambda msg: None)
    m = int(real_images.shape[0])

    def compute_real() -> FeatureStats:
        st = FeatureStats(max_items=m)
        for i, feats in enumerate(extractor.iter_features(real_images)):
            st.append(feats)
            if i % 20 == 0:
                say(f"real features: {st.count}/{m}")
        return st

    classes = class_subset(classes)
    extra = {"classes": classes} if classes is not None else {}
    key = stats_key(dataset_key(real), split, m, image_size, channels, extractor.protocol, m, subset_seed=seed,
                    **extra)
    return cached_stats(key, compute_real, cache_dir, use_cache)


def result_split(split: str, n_real: int, n_fake: int) -> str:
    """The split part of result names: ``"test"``, or ``"test5k"`` when fewer real than generated images."""
    return split + (count_tag(n_real) if n_real < n_fake else "")


def protocol_string(n_fake: int, real_name: str, n_real: int, seed: int, image_size: int | None,
                    extractor=None, kid_subsets: int = 100, kid_subset_size: int = 1000, pr_k: int = 3,
                    classifier_desc: str | None = None, classes: Iterable[int] | None = None) -> str:
    """The ``protocol`` entry of a result: quantisation, real sample, extractor and metric settings.

    ``classes`` (a class-filtered reference) reads e.g. ``real: fashion-mnist/test (classes [9] only) 1000 images``.
    """
    classes = class_subset(classes)
    only = f" (classes {classes} only)" if classes is not None else ""
    parts = [f"fake: {n_fake} images quantised to uint8 (floor(x*127.5+128))",
             f"real: {real_name}{only} {n_real} images (seed {seed}), image_size={image_size or 'native'}"]
    if extractor is not None:
        parts.append(extractor.protocol)
        parts.append(f"KID {kid_subsets}x{min(kid_subset_size, n_fake, n_real)}, cubic kernel; P/R k={pr_k}")
    if classifier_desc is not None:
        parts.append(classifier_desc)
    return "; ".join(parts)


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
                    classes: Iterable[int] | None = None) -> dict[str, Any]:
    """Evaluate generated images against a real dataset split.

    Args:
        fake: folder of images, callable ``f(b)`` or iterable of batches
            ``(B, C, H, W)`` (uint8, or float in [-1, 1]); see :func:`iter_fake_batches`.
        real: dataset name or path, as accepted by ``ganforge.data.load_dataset``.
        split: real split ("test", "train" or "all").
        metrics: names of registered metrics (:func:`~ganforge.metrics.registry.metric_names`;
            built in: ``fid``, ``kid``, ``pr``, ``cls``). Only the feature sources they
            need (Inception, domain classifier) are computed.
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

    Returns:
        A JSON-serialisable dict with the keys described in the module doc,
        plus ``n_fake``, ``n_real``, ``real``, ``seconds``, and ``classes`` (sorted)
        when given.

    Raises:
        ConfigError: unknown metric name, ``n`` below 2, or (``require_n_real``)
            more than the real split holds.
        DataError: unreadable real or generated images.
        WeightsError: the Inception weights are missing or wrong.
    """
    chosen = get_metrics(metrics)
    if n < 2:
        raise ConfigError("n", f"need at least 2 images, got {n}")
    if batch_size < 1:
        raise ConfigError("batch_size", f"must be positive, got {batch_size}")
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    needs = needed_sources(chosen)

    classes = class_subset(classes)
    real_name, real_images = real_images_for(real, split, n, image_size=image_size, channels=channels,
                                             root=root, seed=seed, require_n_real=require_n_real,
                                             classes=classes)
    extractor = (inception_extractor(inception_weights, device, precision, batch_size)
                 if "inception" in needs else None)
    classifier = None
    if "classifier" in needs:
        classifier, cls_meta = get_domain_classifier(real, root=root, cache_dir=classifier_dir,
                                                    device=device, progress=say)

    real_stats = None
    if extractor is not None:
        real_stats = real_inception_stats(extractor, real, split, real_images, image_size=image_size,
                                          channels=channels, seed=seed, cache_dir=cache_dir,
                                          use_cache=use_cache, progress=say, classes=classes)

    # Raw generated features only when a metric reads them (KID, P/R); FID needs the moments alone.
    keep = n if any(m.raw_features for m in chosen if "inception" in m.needs) else 0
    fake_stats = FeatureStats(max_items=keep)
    cls_feats, cls_logits = [], []
    n_fake = 0
    for batch in iter_fake_batches(fake, n, batch_size):
        if extractor is not None:
            append_features(fake_stats, extractor, batch)
        if classifier is not None:
            f, lg = classifier.predict(batch)
            cls_feats.append(f)
            cls_logits.append(lg)
        n_fake += batch.shape[0]
        say(f"generated images: {n_fake}/{n}")
    if n_fake < 2:
        raise DataError("fake", f"need at least 2 generated images, got {n_fake}")

    n_real = int(real_images.shape[0])
    # Fewer real images than generated ones (Python callers; the CLI refuses it): the name says so.
    sp = result_split(split, n_real, n_fake)
    sources: dict[str, Any] = {}
    if real_stats is not None:
        sources["inception"] = FeaturePair(real=real_stats, fake=fake_stats)
    if classifier is not None:
        real_cls, real_logits = classifier.predict(real_images)
        sources["classifier"] = ClassifierOutputs(real_features=real_cls, real_logits=real_logits,
                                                  fake_features=torch.cat(cls_feats),
                                                  fake_logits=torch.cat(cls_logits), meta=cls_meta)
    options = MetricOptions(seed=seed, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, pr_k=pr_k)
    out: dict[str, Any] = {}
    for metric in chosen:
        out.update(metric(sources, count_tag(n_fake), sp, options))

    cls_desc = (f"domain classifier {dataset_key(real)} widths={cls_meta['config']['widths']}"
                if classifier is not None else None)
    out.update(protocol=protocol_string(n_fake, real_name, n_real, seed, image_size, extractor, kid_subsets,
                                        kid_subset_size, pr_k, cls_desc, classes),
               n_fake=n_fake, n_real=n_real,
               real=f"{real}:{split}", seconds=round(time.perf_counter() - t0, 1))
    if classes is not None:
        out["classes"] = classes
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
