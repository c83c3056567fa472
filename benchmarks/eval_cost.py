"""Cost of one periodic FID evaluation, broken down by phase, for the previous and the current code.

One generator (a preset's, randomly initialised: the cost does not depend on
the weights) is evaluated ``--repeats`` times with ``--n`` images on
``--device`` along each path:

``previous``
    The periodic-evaluation flow before the kept evaluator (:class:`~ganforge.metrics.evaluator.Evaluator`),
    reproduced here step by step: every call loads the real split, builds a new
    ``InceptionFeatures`` (TorchScript load and executor warm-up), reads the
    cached real statistics, copies each generated batch and its features to the
    host, accumulates the moments in numpy float64 and computes the Frechet
    distance with two numpy eigen-decompositions.
``compute_metrics``
    The one-shot API (what ``ganforge eval`` runs), as it is now: set-up at every
    call, device-side statistics and torch Frechet distance. Total only.
``monitor``
    What periodic evaluation runs now: ``shared_evaluator`` (set-up at the
    first call only), images and features kept on the device.

Phases (seconds per evaluation): ``setup`` (real data, extractor, real
statistics; the monitor's first call only), ``generate`` (generator and uint8
quantisation), ``features`` (Inception), ``statistics`` (moment accumulation),
``frechet`` (covariances and distance) and ``total``. Each phase ends with a
device synchronisation so that phases add up; ``total_unsynced`` is the same
monitor evaluation without those synchronisations (what training pays).
Real statistics missing from the disk cache are computed once before any
timing (``real_stats_cache_miss_s``).

``--frechet-n`` (default 10000; 0 skips it) also times the statistics and
Frechet part alone on random ``(N, 2048)`` features, which is independent of
Inception: numpy on the host (previous) against torch on the device
(``FeatureStats`` and ``FrechetReference``: its first call includes the square
root of the reference covariance, later calls do not).

An evaluation cannot get below its ``features`` phase. ``--extraction-grid``
times fp32 extraction alone under several settings (Inception batch, NHWC or
NCHW input, cuDNN's algorithm timing on or off) and checks that the features
do not move; ``InceptionFeatures``' defaults per device come from it.

Usage::

    python benchmarks/eval_cost.py --config configs/dcgan-fashion-mnist.yaml --device cuda --n 10000 --json cost.json
    python benchmarks/eval_cost.py --device cuda --n 10000 --paths none --frechet-n 10000 \
        --extraction-grid "250:1:0;250:0:0;500:0:0;250:1:1;250:0:1;500:0:1" --json grid.json
    python benchmarks/eval_cost.py --device cpu --n 500 --repeats 2 --paths previous,monitor
"""

from __future__ import annotations

import argparse
import json
import statistics as pystats
import sys
import tempfile
import time
from pathlib import Path

now = time.perf_counter
PATHS = ("previous", "compute_metrics", "monitor")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from ganforge.commands._options import OneLineErrorParser

    p = OneLineErrorParser(prog="eval_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/dcgan-fashion-mnist.yaml", help="preset YAML (its generator)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--n", type=int, default=10000, help="generated images per evaluation (default 10000)")
    p.add_argument("--repeats", type=int, default=3, help="evaluations per path: first + steady state")
    p.add_argument("--paths", default=",".join(PATHS),
                   help=f"comma-separated subset of {','.join(PATHS)}, or 'none' (the Frechet part only)")
    p.add_argument("--real", default="preset", help="'preset' (the preset's data set, test split) or "
                                                    "'synthetic' (random images of the preset's shape)")
    p.add_argument("--inception-batch", type=int, default=0, help="Inception batch (default: as training)")
    p.add_argument("--generate-batch", type=int, default=0, help="generator batch of the monitor path "
                                                                 "(default: as training)")
    p.add_argument("--frechet-n", type=int, default=10000, help="random features for the statistics + "
                                                                "Frechet part alone (0: skip)")
    p.add_argument("--extraction-grid", default="",
                   help="time fp32 feature extraction alone for each setting in a ';'-separated list of "
                        "'batch:channels_last:cudnn_benchmark' (e.g. '250:1:0;500:0:1'), against the first")
    p.add_argument("--cache-dir", help="real statistics cache (default: the ganforge cache)")
    p.add_argument("--json", help="write the result to this file")
    args = p.parse_args(argv)
    try:
        args.grid = [tuple(int(v) for v in item.split(":")) for item in args.extraction_grid.split(";")
                     if item.strip()]
    except ValueError:
        p.error(f"--extraction-grid: expected 'batch:channels_last:cudnn_benchmark;...', "
                f"got {args.extraction_grid!r}")
    if any(len(g) != 3 or g[0] < 1 or g[1] not in (0, 1) or g[2] not in (0, 1) for g in args.grid):
        p.error("--extraction-grid: each item is batch (positive), channels_last (0/1), cudnn_benchmark (0/1)")
    args.path_list = [] if args.paths == "none" else [x for x in args.paths.split(",") if x]
    if (not args.path_list and args.paths != "none") or any(x not in PATHS for x in args.path_list):
        p.error(f"--paths: choose from {','.join(PATHS)}")
    if args.n < 2 or args.repeats < 1 or args.frechet_n < 0:
        p.error("--n must be at least 2, --repeats positive, --frechet-n not negative")
    if args.real not in ("preset", "synthetic"):
        p.error("--real: 'preset' or 'synthetic'")
    return args


def _median_phases(calls: list[dict]) -> dict:
    return {k: pystats.median(c[k] for c in calls) for k in calls[0]} if calls else {}


def previous_evaluation(G, cfg, real, split, n, device, inception_batch, cache_dir) -> tuple[float, dict]:
    """One evaluation the way periodic evaluation did it before the kept evaluator (FID only)."""
    import numpy as np

    from ganforge.perf.machine import sync
    from ganforge.metrics.evaluator import real_images_for, real_inception_stats
    from ganforge.metrics.fid import frechet_distance
    from ganforge.metrics.inception import InceptionFeatures, as_uint8_batch
    from ganforge.sampling import generate

    t = dict.fromkeys(("setup", "generate", "features", "statistics", "frechet"), 0.0)
    t0 = a = now()
    _, real_images = real_images_for(real, split, n, image_size=cfg.data.image_size,
                                     channels=cfg.data.channels, root=cfg.data.root)
    extractor = InceptionFeatures(None, device, "fp32", inception_batch)  # a new one every call
    real_stats = real_inception_stats(extractor, real, split, real_images, image_size=cfg.data.image_size,
                                      channels=cfg.data.channels, cache_dir=cache_dir)
    sync(device)
    t["setup"] = now() - a
    shift = total = outer = None
    count, kept = 0, []
    stream = iter(generate(G, cfg, n, seed=cfg.train.seed, device=device))  # default batch 256, as before
    while True:
        a = now()
        batch = next(stream, None)
        if batch is None:
            break
        batch = as_uint8_batch(batch).cpu()  # iter_fake_batches copied every batch to the host
        t["generate"] += now() - a
        a = now()
        feats = extractor(batch)  # the whole generated batch in one forward pass, as before
        sync(device)
        t["features"] += now() - a
        a = now()
        x = feats.detach().cpu().double().numpy()
        if shift is None:
            shift = x.mean(0)
            total, outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or Inf")
        xc = x - shift
        total += xc.sum(0)
        outer += xc.T @ xc
        count += x.shape[0]
        kept.append(x.astype(np.float32))  # raw features were kept for every metric
        t["statistics"] += now() - a
    a = now()
    m = total / count
    cov = (outer - count * np.outer(m, m)) / (count - 1)
    value = frechet_distance(*real_stats.mean_cov(), shift + m, 0.5 * (cov + cov.T))
    t["frechet"] = now() - a
    t["total"] = now() - t0
    return value, t


def monitor_evaluation(G, cfg, real, split, n, device, inception_batch, generate_batch, cache_dir
                       ) -> tuple[float, dict, float, float]:
    """One periodic evaluation as now, instrumented; then the same call without synchronisations."""
    from ganforge.perf.machine import sync
    from ganforge.metrics.fakes import iter_fake_batches
    from ganforge.metrics.evaluator import shared_evaluator
    from ganforge.metrics.stats import FeatureStats
    from ganforge.sampling import generate

    t = dict.fromkeys(("setup", "generate", "features", "statistics", "frechet"), 0.0)
    t0 = a = now()
    mon = shared_evaluator(real, split, n, ("fid",), image_size=cfg.data.image_size, channels=cfg.data.channels,
                             root=cfg.data.root, device=device, batch_size=inception_batch, cache_dir=cache_dir)
    sync(device)
    t["setup"] = now() - a
    ext, stats = mon.extractor, FeatureStats()
    batches = iter_fake_batches(generate(G, cfg, n, seed=cfg.train.seed, device=device,
                                         batch_size=generate_batch), n)
    while True:
        a = now()
        batch = next(batches, None)
        sync(device)
        t["generate"] += now() - a
        if batch is None:
            break
        for chunk in batch.split(ext.batch_size):
            a = now()
            feats = ext(chunk)
            sync(device)
            t["features"] += now() - a
            a = now()
            stats.append(feats)
            sync(device)
            t["statistics"] += now() - a
    a = now()
    value = mon.frechet_reference().distance(*stats.mean_cov_torch())
    t["frechet"] = now() - a
    t["total"] = now() - t0
    a = now()
    plain = mon(generate(G, cfg, n, seed=cfg.train.seed, device=device, batch_size=generate_batch))
    sync(device)
    unsynced = now() - a
    return value, t, unsynced, next(v for k, v in plain.items() if k.startswith("fid"))


def frechet_alone(n: int, device, batch: int, repeats: int, d: int = 2048) -> dict:
    """Statistics + Frechet distance on random ``(n, d)`` features: numpy on the host vs torch on ``device``."""
    import numpy as np
    import torch

    from ganforge.perf.machine import sync
    from ganforge.metrics.fid import FrechetReference, frechet_distance
    from ganforge.metrics.stats import FeatureStats

    g = torch.Generator(device="cpu").manual_seed(0)
    # Non-negative, unequal scales per dimension: closer to pool3 features than N(0, I).
    real = (torch.rand(n, d, generator=g) ** 2 * torch.rand(d, generator=g) * 2).to(device)
    fake = (torch.rand(n, d, generator=g) ** 2 * torch.rand(d, generator=g) * 2).to(device)
    real_stats = FeatureStats()
    for chunk in real.split(batch):
        real_stats.append(chunk)
    mu_r, c_r = real_stats.mean_cov()
    out: dict = {"n": n, "dim": d, "batch": batch}

    sync(device)
    a = now()  # previous: per-batch copy to the host and numpy float64 outer products
    shift = s = outer = None
    for chunk in fake.split(batch):
        x = chunk.cpu().double().numpy()
        if shift is None:
            shift, s, outer = x.mean(0), np.zeros(d), np.zeros((d, d))
        xc = x - shift
        s += xc.sum(0)
        outer += xc.T @ xc
    m = s / n
    cov_np = (outer - n * np.outer(m, m)) / (n - 1)
    mu_np, cov_np = shift + m, 0.5 * (cov_np + cov_np.T)
    out["statistics_previous_s"] = now() - a
    a = now()
    st = FeatureStats()
    for chunk in fake.split(batch):
        st.append(chunk)
    mu_t, cov_t = st.mean_cov_torch()
    sync(device)
    out["statistics_now_s"] = now() - a
    out["statistics_max_rel_diff"] = float(np.abs(cov_t.cpu().numpy() - cov_np).max() / np.abs(cov_np).max())

    a = now()
    d_np = frechet_distance(mu_r, c_r, mu_np, cov_np)
    out["frechet_previous_s"] = now() - a
    a = now()
    ref = FrechetReference(mu_r, c_r, device=device)
    sync(device)
    out["frechet_reference_setup_s"] = now() - a
    times = []
    for _ in range(max(repeats, 1)):
        a = now()
        d_t = ref.distance(mu_t, cov_t)
        times.append(now() - a)
    out["frechet_now_first_s"] = out["frechet_reference_setup_s"] + times[0]
    out["frechet_now_steady_s"] = pystats.median(times[1:] or times)
    out.update(fid_previous=d_np, fid_now=d_t, fid_rel_diff=abs(d_t - d_np) / d_np)
    return out


def extraction_grid(images, device, grid: list[tuple[int, int, int]], repeats: int) -> list[dict]:
    """fp32 Inception extraction of uint8 ``images (N, C, H, W)`` under each (batch, channels_last,
    cudnn_benchmark) setting: seconds (median of ``repeats`` after a warm-up batch), images/s, and how
    far the features and their Frechet distance move from the first setting's (the protocol's numbers
    must not change; only the convolution algorithms and memory layout differ)."""
    import torch

    from ganforge.perf.machine import sync
    from ganforge.metrics.evaluator import inception_extractor
    from ganforge.metrics.fid import frechet_distance_torch
    from ganforge.metrics.stats import FeatureStats

    ext = inception_extractor(None, device, "fp32", grid[0][0], reuse=True)
    old = (ext.batch_size, ext.channels_last, ext.cudnn_benchmark)
    rows, reference, ref_stats = [], None, None
    try:
        for batch, channels_last, bench in grid:
            ext.batch_size, ext.channels_last, ext.cudnn_benchmark = batch, bool(channels_last), bool(bench)
            ext(images[:batch])  # warm-up: cuDNN's algorithm choice for this shape, the allocator
            sync(device)
            times = []
            for _ in range(max(repeats, 1)):
                a = now()
                feats = torch.cat(list(ext.iter_features(images)))
                sync(device)
                times.append(now() - a)
            stats = FeatureStats()
            stats.append(feats)
            row = {"batch": batch, "channels_last": bool(channels_last), "cudnn_benchmark": bool(bench),
                   "seconds": round(pystats.median(times), 4),
                   "images_per_s": round(images.shape[0] / pystats.median(times), 1)}
            if reference is None:
                reference, ref_stats = feats, stats
                row.update(max_rel_feature_diff=0.0, fid_to_first=0.0)
            else:
                row["max_rel_feature_diff"] = float((feats - reference).abs().max() / reference.abs().max())
                row["fid_to_first"] = float(frechet_distance_torch(*ref_stats.mean_cov_torch(),
                                                                   *stats.mean_cov_torch()))
            rows.append(row)
            print("extraction " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    finally:
        ext.batch_size, ext.channels_last, ext.cudnn_benchmark = old
    return rows


def _synthetic_real(cfg, n: int) -> str:
    import numpy as np

    c, s = cfg.data.channels or 3, cfg.data.image_size or 32
    path = Path(tempfile.mkdtemp(prefix="eval_cost-")) / "synthetic.npz"
    rng = np.random.default_rng(0)
    shape = (n, s, s) if c == 1 else (n, s, s, c)
    np.savez(path, images=rng.integers(0, 256, shape, dtype=np.uint8))
    return str(path)


def run(args: argparse.Namespace) -> dict:
    import torch

    from ganforge.perf.machine import device_name, sync
    from ganforge.config import load_config
    from ganforge.devices import resolve_device
    from ganforge.errors import ConfigError
    from ganforge.metrics.compute import compute_metrics
    from ganforge.metrics.evaluator import clear_evaluators, clear_shared_extractors, inception_extractor
    from ganforge.metrics.evaluator import real_images_for, real_inception_stats
    from ganforge.models import build_models
    from ganforge.sampling import generate
    from ganforge.train.periodic_eval import CUDA_GENERATE_BATCH, CUDA_INCEPTION_BATCH

    device = resolve_device(args.device, "--device")
    cuda = device.type == "cuda"
    cfg = load_config(args.config, [f"train.device={device}"])
    if cfg.data.classes is not None and args.real == "preset":
        # The paths timed here build the whole test split as reference; a class-subset run's
        # evaluation compares with its classes only (fewer real images): a different cost.
        raise ConfigError("data.classes", f"{args.config}: eval_cost times whole-split references; "
                          "use a preset without data.classes, or --real synthetic")
    torch.manual_seed(0)  # the same (random) generator in every run
    G, _ = build_models(cfg, training=False)
    G = G.to(device).eval()
    real = cfg.data.dataset if args.real == "preset" else _synthetic_real(cfg, args.n)
    split = "test" if args.real == "preset" else "all"
    inc_batch = args.inception_batch or (CUDA_INCEPTION_BATCH if cuda else 64)
    gen_batch = args.generate_batch or (CUDA_GENERATE_BATCH if cuda else 256)
    # The CUDA context and library handles exist in a training process already: not an evaluation cost.
    if cuda:
        x = torch.randn(64, 64, device=device, dtype=torch.float64)
        torch.linalg.eigvalsh(x @ x.T)
        sync(device)
    result: dict = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "config": args.config, "n": args.n, "real": f"{args.real}:{split}", "repeats": args.repeats,
                    "inception_batch": inc_batch,
                    "generate_batch_monitor": gen_batch, "paths": {}, "fid": {}}

    if args.path_list:
        a = now()  # fill the disk cache once, untimed by the paths (a one-time cost per data set)
        _, real_images = real_images_for(real, split, args.n, image_size=cfg.data.image_size,
                                         channels=cfg.data.channels, root=cfg.data.root)
        ext = inception_extractor(None, device, "fp32", inc_batch)
        real_inception_stats(ext, real, split, real_images, image_size=cfg.data.image_size,
                             channels=cfg.data.channels, cache_dir=args.cache_dir)
        result["real_stats_cache_miss_s"] = round(now() - a, 3)
        del ext, real_images
        print(f"{result['device']}; real statistics ready ({result['real_stats_cache_miss_s']:.1f} s "
              f"incl. loading the extractor once)", flush=True)

    for path in args.path_list:
        clear_evaluators()
        clear_shared_extractors()
        calls, values, extra = [], [], []
        with torch.inference_mode():
            for i in range(args.repeats):
                if path == "previous":
                    v, t = previous_evaluation(G, cfg, real, split, args.n, device, inc_batch, args.cache_dir)
                elif path == "monitor":
                    v, t, unsynced, v2 = monitor_evaluation(G, cfg, real, split, args.n, device, inc_batch,
                                                            gen_batch, args.cache_dir)
                    extra.append(unsynced)
                    values.append(v2)
                else:
                    a = now()
                    r = compute_metrics(generate(G, cfg, args.n, seed=cfg.train.seed, device=device,
                                                 batch_size=inc_batch), real, split, ("fid",), args.n,
                                        image_size=cfg.data.image_size, channels=cfg.data.channels,
                                        root=cfg.data.root, device=device, batch_size=inc_batch,
                                        cache_dir=args.cache_dir)
                    sync(device)
                    t = {"total": now() - a}
                    v = next(val for k, val in r.items() if k.startswith("fid"))
                calls.append({k: round(x, 4) for k, x in t.items()})
                values.append(v)
                print(f"{path} #{i + 1}: " + ", ".join(f"{k} {x:.3f}" for k, x in calls[-1].items())
                      + (f", total_unsynced {extra[-1]:.3f}" if extra else "") + f"  (FID {v:.4f})", flush=True)
        entry = {"calls": calls, "first": calls[0], "steady_median": _median_phases(calls[1:])}
        if extra:
            entry["total_unsynced"] = [round(x, 4) for x in extra]
        result["paths"][path] = entry
        result["fid"][path] = values
    if args.grid:
        _, real_images = real_images_for(real, split, args.n, image_size=cfg.data.image_size,
                                         channels=cfg.data.channels, root=cfg.data.root)
        images = real_images.to(device)  # uint8 (N, C, H, W)
        result["extraction_grid"] = extraction_grid(images, device, args.grid, max(args.repeats - 1, 1))
    if args.frechet_n:
        fa = frechet_alone(args.frechet_n, device, inc_batch, max(args.repeats, 2))
        result["frechet_alone"] = {k: round(v, 4) if isinstance(v, float) and k.endswith("_s") else v
                                   for k, v in fa.items()}
        print("statistics + Frechet alone (D={dim}, n={n}): ".format(**fa) + ", ".join(
            f"{k} {v:.3g}" for k, v in fa.items() if k.endswith(("_s", "diff"))), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    from ganforge.errors import GanforgeError

    args = parse_args(argv)
    try:
        result = run(args)
    except GanforgeError as exc:
        print(f"eval_cost: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
