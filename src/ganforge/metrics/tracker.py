"""FID measured repeatedly against the same real data (evaluation during training).

:func:`~ganforge.metrics.compute.compute_metrics` sets everything up for a
single evaluation. Periodic evaluation asks the same question every few
thousand steps, and most of that set-up does not depend on the generator, so
:class:`FIDMonitor` does it once per process:

* the Inception extractor is built once
  (:func:`~ganforge.metrics.compute.inception_extractor` with ``reuse``):
  no reload of the TorchScript file, no new warm-up of its executor;
* the real images are loaded, and their statistics read from the disk cache
  (or computed and stored), once, under the same cache key as ``compute_metrics``;
* the square root of the real covariance is computed once, in float64 on the
  extractor's device (:class:`~ganforge.metrics.fid.FrechetReference`);
* on CUDA the extractor is warmed up on blank images of the shapes the
  evaluations will pass (``warmup``): cuDNN times its algorithms once per input
  shape, and the TorchScript executor profiles and optimises its first calls.
  When the real statistics come from the disk cache, nothing else runs the
  network during set-up, and that one-off cost (seconds, next to ~4 s for an
  FID-10k on an H200) fell on the first evaluation instead.

Each call then quantises and extracts on the device the images come on,
accumulates float64 moments there (no raw features are kept), and finishes
with one ``S C S`` product and one ``eigvalsh``. Result name, value and
``protocol`` string are those of ``compute_metrics(fake, real, split,
("fid",), n, ...)`` with the same arguments: the protocol is unchanged. That
includes ``classes`` (a run trained on ``data.classes``): the reference is the
split's images of those classes, under their own cache key, and the record
carries ``classes``; more generated than real images follow the same rule (the
name carries the real count, e.g. ``fid2k_test1k``).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import torch

from ganforge.errors import ConfigError, DataError
from ganforge.metrics.compute import (
    append_features,
    class_subset,
    count_tag,
    inception_extractor,
    iter_fake_batches,
    protocol_string,
    real_images_for,
    real_inception_stats,
    result_split,
)
from ganforge.metrics.fid import FrechetReference
from ganforge.metrics.stats import FeatureStats


class FIDMonitor:
    """FID of generated images against one real split, with the generator-independent work done once.

    Args:
        real, split, n: real dataset and split, and the number of generated
            images per evaluation (at most ``n`` real ones, seeded subset).
        image_size, channels, root: passed to ``load_dataset`` for the real images.
        device, precision, batch_size: Inception settings (``batch_size`` images
            per forward pass; larger generated batches are split).
        seed: seed of the real subset (part of the cache key), as in ``compute_metrics``.
        cache_dir, use_cache, inception_weights, progress: as in ``compute_metrics``.
        classes: compare with the split's images of these class ids only, as in ``compute_metrics``.
        warmup: run the extractor on blank images of the evaluation's batch shapes
            during set-up (default: on CUDA only; on a CPU the passes cost
            seconds each and there is no algorithm timing to move).
    """

    def __init__(self, real: str, split: str, n: int, *, image_size: int | None = None,
                 channels: int | None = None, root: str | None = None,
                 device: str | torch.device = "cpu", precision: str = "fp32", batch_size: int = 64,
                 seed: int = 0, cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                 inception_weights: str | os.PathLike | None = None,
                 progress: Callable[[str], None] | None = None, classes: list[int] | None = None,
                 warmup: bool | None = None):
        if n < 2:
            raise ConfigError("n", f"need at least 2 images, got {n}")
        if batch_size < 1:
            raise ConfigError("batch_size", f"must be positive, got {batch_size}")
        t0 = time.perf_counter()
        self.n, self.split, self.seed, self.image_size = int(n), split, seed, image_size
        self.batch_size = int(batch_size)
        self.real = f"{real}:{split}"
        self.classes = class_subset(classes)
        self.device = torch.device(device)
        self.extractor = inception_extractor(inception_weights, self.device, precision, batch_size, reuse=True)
        self.real_name, real_images = real_images_for(real, split, n, image_size=image_size, channels=channels,
                                                      root=root, seed=seed, classes=self.classes)
        self.n_real = int(real_images.shape[0])
        real_stats = real_inception_stats(self.extractor, real, split, real_images, image_size=image_size,
                                          channels=channels, seed=seed, cache_dir=cache_dir,
                                          use_cache=use_cache, progress=progress, classes=self.classes)
        # Only the moments are needed from now on; the real images and raw features are dropped.
        self.reference = FrechetReference(*real_stats.mean_cov_torch(), device=self.device)
        if warmup is None:
            warmup = self.device.type == "cuda"
        if warmup:
            self.warm_up(tuple(real_images.shape[1:]))
        self.setup_seconds = time.perf_counter() - t0
        self.calls = 0  # evaluations so far

    def warm_up(self, image_shape: tuple[int, ...]) -> None:
        """Run the extractor twice on blank uint8 images ``(B, *image_shape)`` for each batch size ``B`` an
        evaluation of ``n`` images passes (full batches and the remainder).

        Generated images have the real images' shape ``(C, H, W)`` (the config's),
        and the generator's batches are a multiple of the extractor's (periodic
        evaluation on CUDA: 500 and 250), so after this the evaluations meet no
        new input shape. Two passes: the TorchScript profiling executor
        optimises the graph on its second call.
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

    def fake_stats(self, fake) -> FeatureStats:
        """Moments (float64, on the images' device) of the Inception features of ``n`` generated images.

        ``fake``: a folder, a callable ``f(b) -> (b, C, H, W)`` or an iterable of
        batches, float in [-1, 1] or uint8 (see :func:`~ganforge.metrics.compute.iter_fake_batches`).
        """
        self.calls += 1
        stats = FeatureStats()  # no raw features: FID reads the moments only
        for batch in iter_fake_batches(fake, self.n, self.batch_size):
            append_features(stats, self.extractor, batch)
        if stats.count < 2:
            raise DataError("fake", f"need at least 2 generated images, got {stats.count}")
        return stats

    def result(self, stats: FeatureStats, seconds: float = 0.0) -> dict[str, Any]:
        """The result record of ``stats`` (from :meth:`fake_stats`), keyed like ``compute_metrics``'."""
        n_fake = stats.count
        value = self.reference.distance(*stats.mean_cov_torch())
        out = {f"fid{count_tag(n_fake)}_{result_split(self.split, self.n_real, n_fake)}": value,
               "protocol": protocol_string(n_fake, self.real_name, self.n_real, self.seed, self.image_size,
                                           self.extractor, classes=self.classes),
               "n_fake": n_fake, "n_real": self.n_real, "real": self.real, "seconds": round(seconds, 1)}
        if self.classes is not None:
            out["classes"] = self.classes
        return out

    def __call__(self, fake) -> dict[str, Any]:
        """Evaluate generated images; returns ``{"fid<n>_<split>": value, "protocol", "n_fake", "n_real", ...}``."""
        t0 = time.perf_counter()
        stats = self.fake_stats(fake)
        return self.result(stats, time.perf_counter() - t0)


_MONITORS: dict[tuple, FIDMonitor] = {}


def shared_fid_monitor(real: str, split: str, n: int, **kwargs: Any) -> FIDMonitor:
    """The :class:`FIDMonitor` for these arguments, built on first use and kept for the process.

    Keyed by every argument and by the extractor itself (so a replaced weights
    file, another device or precision gives a new monitor). Keyword arguments
    are those of :class:`FIDMonitor`.
    """
    extractor = inception_extractor(kwargs.get("inception_weights"), kwargs.get("device", "cpu"),
                                    kwargs.get("precision", "fp32"), kwargs.get("batch_size", 64), reuse=True)

    def hashable(v):  # paths and devices by name; lists (classes) as tuples
        return str(v) if isinstance(v, (os.PathLike, torch.device)) else tuple(v) if isinstance(v, list) else v

    # Wherever None is accepted it means the default: passing it is the same monitor as leaving it out.
    settings = {k: hashable(v) for k, v in kwargs.items() if k != "progress" and v is not None}
    key = (extractor, real, split, int(n), tuple(sorted(settings.items())))
    monitor = _MONITORS.get(key)
    if monitor is None:
        monitor = _MONITORS[key] = FIDMonitor(real, split, n, **kwargs)
    return monitor


def clear_fid_monitors() -> None:
    """Forget the monitors kept by :func:`shared_fid_monitor` (their device memory is freed with them)."""
    _MONITORS.clear()
