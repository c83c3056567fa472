"""Scoring a trained inpainting run against classical baselines on the same images and masks.

Protocol (it is written into every result under ``"protocol"``):

* images: the first ``n`` images of the run's dataset, ``split`` (default
  ``test``), at the run's ``data.image_size`` and ``data.channels``;
* masks: ``make_masks(masks, n, size, hole_ratio, torch.Generator().manual_seed(seed))``,
  identical for every method;
* every method's output is uint8 with the known pixels copied from the input,
  and is scored against the original uint8 image;
* PSNR (data range 255) per image, over the hole pixels ("hole") or all
  pixels ("whole"), then averaged over images;
* SSIM (Wang et al. 2004): Gaussian window sigma 1.5 truncated to 11x11,
  K1 = 0.01, K2 = 0.03, data range 255, channels averaged; "whole" averages the
  map over the valid windows (as scikit-image does), "hole" computes the map at
  every pixel (symmetric border extension) and averages it over the hole; then
  averaged over images (images must be at least 11x11);
* L1 (hole): mean absolute error over hole pixels, in [0, 1] units;
* FID (``fid<n>_<split>``): restored set vs the ``n`` original images, the
  registry's ``fid`` metric on the features of the evaluation pipeline's
  extractor (:func:`ganforge.metrics.evaluator.inception_extractor`; its
  protocol string is recorded), statistics of the originals and the baselines
  from the one statistics cache. With a few hundred images FID is biased
  upwards; compare methods only at the same ``n``.
* P-IDS / U-IDS (``pids<n>_<split>``, ``uids<n>_<split>``): the registry's ``ids``
  metric on the same features, each restored image paired with its original
  (a cross-fitted linear SVM: :mod:`ganforge.metrics.ids`); higher is better.
* IPD (``ipd``): a perceptual distance of each restored image to its original,
  LPIPS's recipe on the same Inception network with equal channel weights
  (:mod:`ganforge.metrics.perceptual`, which states its protocol), averaged over
  images; lower is better. Not LPIPS values: compare them with each other only.

PSNR, SSIM and L1 come from :mod:`ganforge.metrics.restoration`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import Tensor

from ganforge.errors import ConfigError, GanforgeError
from ganforge.inpaint import baselines as bl
from ganforge.inpaint.masks import MASK_KINDS, make_masks
from ganforge.metrics.restoration import PSNR_CAP, restoration_scores as score

# Per-image restoration scores (score()); FID comes from the metric registry, under fid<n>_<split>.
RESTORATION_METRICS = ("psnr_hole", "ssim_hole", "psnr", "ssim", "l1_hole")


# --------------------------------------------------------------- evaluation

def _fid_extractor(device, precision: str, notes: list[str]):
    try:
        from ganforge.metrics.evaluator import inception_extractor
    except ImportError as exc:
        notes.append(f"FID skipped: the Inception metric is not available ({exc})")
        return None
    try:
        return inception_extractor(None, device, precision, reuse=True)  # one per process, for every mask family
    except GanforgeError as exc:
        notes.append(f"FID skipped: {exc}")
        return None


def _fid_scores(extractor, restored: dict[str, Tensor], original: Tensor, data_key: dict, mask_key: dict,
                use_cache: bool, split: str, notes: list[str]) -> dict:
    """``{method: {"fid<n>_<split>": value, "uids...", "pids..."}}``: the registry's ``fid`` and ``ids``.

    Each restored set is scored against ``original``; the raw features are kept
    (``max_items`` = n) because the SVM of ``ids`` reads them.

    The statistics of the originals and of the baselines' outputs depend only on
    the data, masks and library versions, so they are kept in the statistics
    cache (:func:`ganforge.metrics.evaluator.inception_stats`) under ``data_key``
    (the fields of :func:`~ganforge.metrics.cache.stats_key`), plus ``mask_key``
    for restored sets, plus what restored them; a second run evaluated with the
    same protocol only extracts its own images, and the originals are extracted
    once for every mask family and bucket.
    """
    from ganforge.metrics.cache import stats_key
    from ganforge.metrics.catalog import FeaturePair, MetricOptions, compute_registered, get_metrics
    from ganforge.metrics.evaluator import inception_stats
    from ganforge.metrics.ids import MIN_PAIRS

    keep = int(original.shape[0])

    def stats(images: Tensor, cacheable: bool, **fields):
        return inception_stats(extractor, images, stats_key(**data_key, **fields), keep=keep, use_cache=cacheable)

    names = ["fid", "ids"]
    if keep < MIN_PAIRS:
        names = ["fid"]
        notes.append(f"P-IDS/U-IDS skipped: need at least {MIN_PAIRS} images, got {keep}")
    metrics = get_metrics(names)
    options = MetricOptions(paired=True)
    ref = stats(original, use_cache, restored_by="none")
    references: dict = {}  # the originals' square root, computed once for every method
    tag = str(keep)  # fid<n>: the exact count, as these results have always been named
    out = {}
    for name, images in restored.items():
        extra = {} if name == "ganforge" else {"library": bl.library_version(name)}
        fake = stats(images, use_cache and name != "ganforge", **mask_key, restored_by=name, **extra)
        values = compute_registered(metrics, {"inception": FeaturePair(ref, fake, references)}, tag, split, options)
        out[name] = {k: v for m in values.values() for k, v in m.items()}
    return out


def _perceptual_scores(extractor, original: Tensor, restored: dict[str, Tensor], results: dict, protocol: dict,
                       notes: list[str], cache_key: dict | None) -> None:
    """Each method's mean perceptual distance to the originals, as ``results[method]["ipd"]``.

    The baselines' values depend only on the data, masks, library and protocol, so
    with a ``cache_key`` (the FID cache's data and mask fields) they are kept in the
    value cache and a second evaluation computes only the run's own.
    """
    from ganforge.metrics.cache import load_cached_value, store_cached_value
    from ganforge.metrics.perceptual import PerceptualDistance

    try:
        distance = PerceptualDistance(extractor)
    except (TypeError, ValueError) as exc:
        notes.append(f"IPD skipped: {exc}")
        return
    protocol["ipd"] = distance.protocol
    keys = {} if cache_key is None else {
        name: {**cache_key, "restored_by": name, "library": bl.library_version(name), "ipd": distance.protocol}
        for name in restored if name != "ganforge"}
    todo = dict(restored)
    for name, key in keys.items():
        value = load_cached_value("ipd", key)
        if value is not None:
            results[name]["ipd"] = value
            del todo[name]
    for name, values in distance.distances(original, todo).items():
        results[name]["ipd"] = values.mean().item()
        if name in keys:
            store_cached_value("ipd", keys[name], results[name]["ipd"])


def evaluate_inpainting(run_dir: str | Path, masks: str = "center", n: int = 1000, hole_ratio: float = 0.25,
                        seed: int = 0, split: str = "test", methods: list[str] | None = None, fid: bool = True,
                        fid_precision: str = "fp32", ema: bool = True, checkpoint: str | Path | None = None,
                        device: str = "cpu", batch_size: int = 100, dataset=None, fid_cache: bool = True,
                        hole_range: tuple[float, float] = (0.0, 1.0), perceptual: bool = True,
                        pipeline=None, preview: int = 0, preview_start: int = 0) -> dict:
    """Score the run's generator and the classical baselines on the same images and masks.

    Args:
        run_dir: a run trained with ``model.arch: inpaint``.
        masks: a mask kind of :data:`~ganforge.inpaint.masks.MASK_KINDS`.
        n: images (the first ``n`` of the split; fewer if the split is smaller).
        hole_ratio: target fraction of missing pixels.
        methods: baselines to run (default: every one whose package is installed;
            the others are skipped with a note). Naming one explicitly makes a
            missing package an error.
        fid: compute FID when the Inception weights are installed (else a note).
        dataset: images to use instead of the run's dataset: an ImageDataset, or a
            dataset spec for :func:`ganforge.data.load_dataset`.
        fid_cache: reuse cached feature statistics of the originals and the
            baselines (never for an in-memory ``dataset``, whose name is not a key).
        hole_range: the ``comod`` bucket ``(lo, hi]``.
        perceptual: with ``fid``, also the perceptual distance ``ipd`` (about as many
            Inception passes as FID again at 64 px; more for larger images).
        pipeline: the run's :class:`~ganforge.inpaint.pipeline.InpaintingPipeline`, when
            the caller has loaded it already (as :func:`evaluate_families` does).
        preview: keep ``preview`` crops of every method under ``"preview"``, from the
            crop ``preview_start`` on (:func:`ganforge.inpaint.preview.preview_rows`; uint8
            tensors, not JSON), for :func:`ganforge.inpaint.preview.write_comparison`.

    A photo corpus (``photos:test``, ``skimage-photos``; :mod:`ganforge.data.photos`)
    gives each image its own mask generator, seeded by the crop's ``mask_seed`` plus
    ``seed``, so a crop's mask does not depend on ``n`` or on the other crops.

    Returns:
        ``{"run_dir", "step", "dataset", "split", "n", "masks", "hole_ratio",
        "seed", "protocol", "notes", "seconds", "results": {method: {metric: value}}}``
        with metric names from :data:`RESTORATION_METRICS` and the registry's FID (``fid<n>_<split>``).
    """
    from ganforge.data import load_dataset
    from ganforge.imageio import to_uint8
    from ganforge.inpaint.pipeline import InpaintingPipeline
    from ganforge.metrics.naming import small_sample_note

    if masks not in MASK_KINDS:
        raise ConfigError("--masks", f"must be one of {', '.join(MASK_KINDS)}, got {masks!r}")
    if n < 1:
        raise ConfigError("--n", f"must be positive, got {n}")
    if not 0.0 < hole_ratio < 1.0:
        raise ConfigError("--ratio", f"must be in (0, 1), got {hole_ratio}")
    t0 = time.perf_counter()
    pipe = pipeline or InpaintingPipeline.from_run(run_dir, ema=ema, device=device, checkpoint=checkpoint)
    from ganforge.config import load_config

    cfg = load_config(Path(run_dir) / "config.yaml")
    if dataset is None or isinstance(dataset, (str, Path)):
        ds = load_dataset(str(dataset or cfg.data.dataset), split=split, image_size=cfg.data.image_size,
                          channels=cfg.data.channels, root=cfg.data.root, download=cfg.data.download)
    else:
        ds = dataset
    if tuple(ds.images.shape[1:]) != (cfg.data.channels, cfg.data.image_size, cfg.data.image_size):
        raise ConfigError("dataset", f"{ds.name} images are {tuple(ds.images.shape[1:])}, the run expects "
                                     f"{(cfg.data.channels, cfg.data.image_size, cfg.data.image_size)}")
    original = ds.images[:n]
    n = int(original.shape[0])
    if preview > 0 and not 0 <= preview_start < n:  # checked before the minutes of filling and scoring
        raise ConfigError("--grid-start", f"must be below the {n} images of {ds.name} evaluated, got {preview_start}")
    size = cfg.data.image_size
    hole = _masks(masks, n, size, hole_ratio, seed, hole_range, dataset or cfg.data.dataset, split)
    notes: list[str] = []
    if methods is None:
        methods = [m for m in bl.BASELINES if bl.available(m)]
        missing = [m for m in bl.BASELINES if m not in methods]
        if missing:
            notes.append(f"baselines skipped ({', '.join(missing)}): {bl.INSTALL_HINT}")

    restored: dict[str, Tensor] = {}
    chunks = []
    for s in range(0, n, batch_size):
        x = original[s:s + batch_size].float().div(127.5).sub(1.0)
        chunks.append(to_uint8(pipe.fill(x, hole[s:s + batch_size])))
    restored["ganforge"] = torch.where(hole.bool(), torch.cat(chunks), original)
    for m in methods:
        restored[m] = bl.inpaint_batch(m, original, hole)

    results = {name: score(out, original, hole) for name, out in restored.items()}
    protocol = {"metrics": "ganforge.metrics.restoration on uint8 values (data range 255), per image then "
                           f"averaged; PSNR capped at {PSNR_CAP:g} dB; SSIM gaussian 11x11 sigma 1.5 (whole: valid "
                           "windows; hole: full map over hole pixels); L1 in [0,1]; known pixels copied"}
    if fid:
        if n < 2:
            notes.append("FID skipped: needs at least 2 images")
        else:
            extractor = _fid_extractor(device, fid_precision, notes)
            if extractor is not None:
                protocol["fid"] = extractor.protocol
                data_key = {"dataset": ds.name, "split": split, "count": n, "image_size": size,
                            "channels": cfg.data.channels, "extractor": extractor.protocol, "max_items": n,
                            "subset": "first"}
                mask_key = {"masks": masks, "hole_ratio": hole_ratio, "mask_seed": seed}
                if masks == "comod":
                    mask_key["hole_range"] = list(hole_range)
                use_cache = fid_cache and (dataset is None or isinstance(dataset, (str, Path)))
                for name, values in _fid_scores(extractor, restored, original, data_key, mask_key, use_cache, split,
                                                notes).items():
                    results[name].update(values)
                note = small_sample_note(n)
                if note:
                    notes.append(note)
                if perceptual:
                    _perceptual_scores(extractor, original, restored, results, protocol, notes,
                                       {**data_key, **mask_key} if use_cache else None)
    out = {"run_dir": str(run_dir), "step": pipe.step, "dataset": ds.name, "split": split, "n": n, "masks": masks,
           "hole_range": list(hole_range) if masks == "comod" else None, "hole_ratio": hole_ratio,
           "mean_hole_fraction": hole.mean().item(), "seed": seed,
           "protocol": protocol, "notes": notes, "seconds": time.perf_counter() - t0, "results": results}
    if preview > 0:
        from ganforge.inpaint.preview import preview_rows

        out["preview"] = preview_rows(original, hole, restored, preview, preview_start)
    return out


def _masks(kind: str, n: int, size: int, ratio: float, seed: int, hole_range, spec, split: str) -> Tensor:
    """``(n, 1, size, size)``: per-crop seeds for a photo corpus, else one generator seeded by ``seed``."""
    from ganforge.data.photos import mask_seeds

    seeds = mask_seeds(str(spec), split) if isinstance(spec, (str, Path)) else None
    if seeds is None:
        return make_masks(kind, n, size, ratio, torch.Generator().manual_seed(seed), hole_range=hole_range)
    return torch.cat([make_masks(kind, 1, size, ratio, torch.Generator().manual_seed(s + seed), hole_range=hole_range)
                      for s in seeds[:n]])


def format_table(result: dict) -> str:
    """Method rows x metric columns, as plain text."""
    results = result["results"]
    cols = [c for c in RESTORATION_METRICS if any(c in r for r in results.values())]
    cols += sorted({k for r in results.values() for k in r if k.startswith(("fid", "pids", "uids"))})
    cols += [c for c in ("ipd",) if any(c in r for r in results.values())]
    header = ["method"] + cols
    rows = [[name] + [_fmt(r.get(c)) for c in cols] for name, r in results.items()]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    masks = result["masks"] + (f" {tuple(result['hole_range'])}" if result.get("hole_range") else "")
    title = (f"{result['dataset']} ({result['split']}), n={result['n']}, masks={masks} "
             f"ratio={result['hole_ratio']} (mean hole {result['mean_hole_fraction']:.3f}), step {result['step']}")
    return "\n".join([title] + lines + [f"note: {note}" for note in result["notes"]])


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def evaluate_families(run_dir: str | Path, families: list[str], **kwargs) -> list[dict]:
    """:func:`evaluate_inpainting` once per mask family, and once per ratio bucket for ``comod``.

    ``kwargs`` go to :func:`evaluate_inpainting` (``n``, ``dataset``, ``split``,
    ``methods`` ...). Returns the results in order: the families as given, the
    ``comod`` buckets of :data:`~ganforge.inpaint.mask_families.COMOD_BUCKETS` in place of ``comod``.
    """
    from ganforge.inpaint.mask_families import COMOD_BUCKETS
    from ganforge.inpaint.pipeline import InpaintingPipeline

    load = {k: kwargs[k] for k in ("ema", "device", "checkpoint") if k in kwargs}
    pipe = InpaintingPipeline.from_run(run_dir, **load)  # once for every family and bucket
    out = []
    for family in families:
        ranges = COMOD_BUCKETS if family == "comod" else [(0.0, 1.0)]
        for hole_range in ranges:
            out.append(evaluate_inpainting(run_dir, masks=family, hole_range=hole_range, pipeline=pipe, **kwargs))
    return out


def summary_rows(results: list[dict]) -> list[dict]:
    """One flat row per (family, bucket, method): ``{"masks", "hole_range", "mean_hole", "method", metrics...}``."""
    rows = []
    for r in results:
        for method, metrics in r["results"].items():
            rows.append({"masks": r["masks"], "hole_range": r.get("hole_range"),
                         "mean_hole": r["mean_hole_fraction"], "method": method, **metrics})
    return rows
