"""Metric registry: each metric is one decorated function, looked up by name.

A metric declares the feature sources it needs and which way is better, and
receives the sources and the protocol context as keyword arguments; it returns
its result keys::

    @register_metric("fid", needs=("inception",), better="lower")
    def fid(inception: FeaturePair, *, tag: str, split: str, options: MetricOptions) -> dict:
        return {f"fid{tag}_{split}": ...}

The evaluation pipeline (:class:`ganforge.metrics.evaluator.Evaluator`, behind
``ganforge eval``, periodic evaluation during training and ``eval-inpaint``)
computes only the sources the requested metrics need, then calls each metric
through :func:`compute_registered` (in registration order, so the result keys
come out in a stable order). Sources:

``inception``
    :class:`FeaturePair`: real and generated Inception pool3 statistics
    (:class:`~ganforge.metrics.stats.FeatureStats`; the generated images' raw
    features are kept only when a requested metric is registered with
    ``raw_features=True``, the default: KID and P/R are, FID is not).
``classifier``
    :class:`ClassifierOutputs`: the domain classifier's features and logits on
    the real and the generated images, and its metadata.
``images``
    :class:`ImagePair`: the uint8 pixels themselves, as the extractor sees them
    (generated images after quantisation), for metrics of the images alone.

``better`` (``"lower"`` or ``"higher"``) says which direction improves the
metric's first result key: periodic evaluation keeps its ``best`` checkpoint by it.

Keyword arguments every metric receives: ``tag`` (the generated-image count as
it appears in names, ``"10k"``), ``split`` (the real split) and ``options``
(:class:`MetricOptions`). Adding a metric is one decorated function; a name
registered twice is a programming error (``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from ganforge.errors import ConfigError
from ganforge.metrics.classifier import classifier_score
from ganforge.metrics.fid import FrechetReference, fid_from_features
from ganforge.metrics.kid import kernel_inception_distance, kid_subset_size, polynomial_mmd2_unbiased
from ganforge.metrics.prdc import precision_recall
from ganforge.metrics.stats import FeatureStats
from ganforge.registry import Registry

SOURCES = ("inception", "classifier", "images")
BETTER = ("lower", "higher")


@dataclass(frozen=True)
class FeaturePair:
    """Inception pool3 statistics of the real and the generated images (``features`` are ``(N, 2048)``).

    ``references`` holds the :class:`FrechetReference` of the real statistics per
    device; an evaluator passes the same dict to every evaluation, so the square
    root of the real covariance is computed once.
    """

    real: FeatureStats
    fake: FeatureStats
    references: dict = field(default_factory=dict, compare=False, repr=False)

    def frechet_reference(self, device: str | torch.device | None = None) -> FrechetReference:
        """The real statistics as a :class:`FrechetReference` on ``device`` (default: the generated ones')."""
        device = torch.device(device or self.fake.device or "cpu")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        ref = self.references.get(str(device))
        if ref is None:
            ref = self.references[str(device)] = FrechetReference(*self.real.mean_cov_torch(), device=device)
        return ref


@dataclass(frozen=True)
class ImagePair:
    """The images themselves: real ``(M, C, H, W)`` and generated ``(N, C, H, W)``, uint8 on the host.

    Grayscale and colour sets keep their own channel counts (as the extractor receives them).
    """

    real: torch.Tensor
    fake: torch.Tensor
    # Kept by the evaluator across its evaluations: what a metric derives from the real images
    # alone (they do not change) is computed once and stored here under the metric's own key.
    cache: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClassifierOutputs:
    """The domain classifier on both image sets: features ``(N, F)`` and logits ``(N, K)``, CPU float32."""

    real_features: torch.Tensor
    real_logits: torch.Tensor
    fake_features: torch.Tensor
    fake_logits: torch.Tensor
    meta: dict = field(default_factory=dict)  # the cached classifier's metadata (test_accuracy, config)


@dataclass(frozen=True)
class MetricOptions:
    """Protocol knobs of the built-in metrics (see :func:`~ganforge.metrics.compute.compute_metrics`)."""

    seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3
    # Generated image i restores real image i (inpainting): enables paired metrics (P-IDS).
    paired: bool = False


MetricFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    needs: tuple[str, ...]
    raw_features: bool = True  # reads FeatureStats.features of the generated images, not only the moments
    better: str = "lower"  # the direction that improves the first result key

    def __call__(self, sources: dict[str, Any], tag: str, split: str, options: MetricOptions) -> dict[str, Any]:
        """The metric's result keys, given every computed source (only those it needs are passed on)."""
        return self.fn(**{s: sources[s] for s in self.needs}, tag=tag, split=split, options=options)


_REGISTRY: Registry[Metric] = Registry("metric", "metrics", lower=True)
unregister_metric = _REGISTRY.remove
metric_names = _REGISTRY.names


def register_metric(name: str, needs: Iterable[str] = (), raw_features: bool = True, better: str = "lower"
                    ) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register ``fn`` as metric ``name`` (lower case) computed from the sources in ``needs``.

    ``raw_features=False`` declares that the metric uses only the mean and
    covariance of the Inception features, so the generated images' raw
    ``(N, 2048)`` features need not be kept when no other metric reads them.
    ``better`` is ``"lower"`` or ``"higher"``: the direction that improves the
    first result key (how a ``best`` checkpoint is chosen by this metric).
    """
    needs = tuple(needs)
    _REGISTRY.check_name(name)
    unknown = [s for s in needs if s not in SOURCES]
    if unknown:
        raise ValueError(f"metric {name!r}: unknown source(s) {unknown}; sources are {', '.join(SOURCES)}")
    if better not in BETTER:
        raise ValueError(f"metric {name!r}: better must be 'lower' or 'higher', got {better!r}")

    def decorate(fn: MetricFn) -> MetricFn:
        _REGISTRY.add(name, Metric(name, fn, needs, raw_features, better))
        return fn

    return decorate


def get_metrics(names: Iterable[str], where: str = "metrics") -> list[Metric]:
    """The registered metrics called ``names`` (case-insensitive), in registration order.

    Raises:
        ConfigError: (naming ``where``) a name is not registered, or no name is given.
    """
    wanted = tuple(dict.fromkeys(n.strip().lower() for n in names))
    unknown = [n for n in wanted if n not in _REGISTRY]
    if unknown or not wanted:
        raise ConfigError(where, f"unknown metric(s) {unknown}; choose from {', '.join(_REGISTRY)}")
    return [m for name, m in _REGISTRY.items() if name in wanted]


def compute_registered(metrics: Iterable[Metric], sources: dict[str, Any], tag: str, split: str,
                       options: MetricOptions) -> dict[str, dict[str, Any]]:
    """Each metric's result keys, ``{metric name: {key: value}}``, from the computed ``sources``.

    The one place a metric is called: every evaluation (``eval``, periodic
    evaluation, ``eval-inpaint``) goes through here with the sources it computed.
    """
    return {m.name: m(sources, tag, split, options) for m in metrics}


def needed_sources(metrics: Iterable[Metric]) -> set[str]:
    """The feature sources a set of metrics needs."""
    return {s for m in metrics for s in m.needs}


# ------------------------------------------------------------------ built-in metrics

@register_metric("fid", needs=("inception",), raw_features=False, better="lower")
def fid(inception: FeaturePair, *, tag: str, split: str, options: MetricOptions) -> dict[str, Any]:
    """Frechet Inception distance (float64, on the device of the generated images' statistics).

    The real side's square root comes from ``inception.frechet_reference``: computed
    once per evaluator and device, however many evaluations follow.
    """
    ref = inception.frechet_reference()
    return {f"fid{tag}_{split}": ref.distance(*inception.fake.mean_cov_torch())}


@register_metric("kid", needs=("inception",), better="lower")
def kid(inception: FeaturePair, *, tag: str, split: str, options: MetricOptions) -> dict[str, Any]:
    """Kernel Inception distance: ``(mean, std)`` over random subsets, cubic polynomial kernel.

    Subset size from :func:`~ganforge.metrics.kid.kid_subset_size`; with too few
    images for distinct subsets, one estimate on all of them and no spread (a float).
    """
    real, fake = inception.real.features, inception.fake.features
    m = kid_subset_size(len(real), len(fake), options.kid_subset_size)
    if m is None:
        value: Any = polynomial_mmd2_unbiased(torch.from_numpy(real).double(), torch.from_numpy(fake).double())
    else:
        value = kernel_inception_distance(real, fake, options.kid_subsets, m, options.seed)
    return {f"kid{tag}_{split}": value}


@register_metric("pr", needs=("inception",), better="higher")
def pr(inception: FeaturePair, *, tag: str, split: str, options: MetricOptions) -> dict[str, Any]:
    """Improved precision and recall (k-NN manifolds with ``options.pr_k`` neighbours)."""
    fewest, k = min(len(inception.real.features), len(inception.fake.features)), options.pr_k
    if fewest <= k:  # each point needs k other points of its own set
        raise ConfigError("n", f"precision/recall (k={k}) needs more than {k} images in each set, got {fewest}")
    p, r = precision_recall(inception.real.features, inception.fake.features, k=options.pr_k)
    return {f"precision{tag}_{split}": p, f"recall{tag}_{split}": r}


@register_metric("cls", needs=("classifier",), better="higher")
def cls(classifier: ClassifierOutputs, *, tag: str, split: str, options: MetricOptions) -> dict[str, Any]:
    """Domain-classifier scores: Inception-Score formula and Frechet distance on its features."""
    fake_n, real_n = len(classifier.fake_logits), len(classifier.real_logits)
    return {
        f"cls_score{tag}": classifier_score(classifier.fake_logits, splits=min(10, fake_n)),
        **cls_fid(classifier, tag=tag, split=split, options=options),
        # The same score on real images: the ceiling a generator can be compared with.
        f"cls_score_real_{split}": classifier_score(classifier.real_logits, splits=min(10, real_n)),
        "cls_accuracy": classifier.meta.get("test_accuracy"),
    }


@register_metric("cls_fid", needs=("classifier",), better="lower")
def cls_fid(classifier: ClassifierOutputs, *, tag: str, split: str, options: MetricOptions) -> dict[str, Any]:
    """The domain classifier's Frechet distance alone: the cheap CPU proxy of periodic evaluation (lower is better)."""
    return {f"cls_fid{tag}_{split}": fid_from_features(classifier.real_features.numpy(),
                                                       classifier.fake_features.numpy())}
