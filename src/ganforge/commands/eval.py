"""``ganforge eval``: FID, KID, precision/recall, domain-classifier scores (any registered metric) for a run or two image sets.

Two image sets (``--real``, ``--fake``) are compared on every image the folders
hold unless ``--n`` says otherwise (up to :data:`MAX_DEFAULT_N`); a real folder
without train/test subfolders is named ``folder`` in the results (``fid40_folder``),
not after a split it does not have.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganforge.commands._options import BATCH, SEED, int_in, add_threads_option, use_threads_option
from ganforge.errors import ConfigError

MAX_N = 1_000_000  # generated images (FID-50k is the usual maximum)
DEFAULT_N = 10_000
MAX_DEFAULT_N = 50_000  # two-set mode without --n: every image of the folders, at most this many


# The built-in metric names, for --help: the registry imports torch (seconds), and `eval --help`
# must come at once. tests/test_cli.py checks that this list is exactly the package's registry.
BUILTIN_METRICS = ("fid", "kid", "pr", "cls", "cls_fid", "modes", "ids")


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run (or two image sets) with FID/KID/PR/classifier scores",
                       description="Evaluate a run's generator against its data set, or --fake DIR against "
                       "--real DIR_OR_DATASET. Results are printed and appended to RUN_DIR/metrics.jsonl.")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR")
    p.add_argument("--metrics", default=None,
                   help=f"comma list of {','.join(BUILTIN_METRICS)} or a registered plug-in metric "
                   "(default: fid,kid,pr, and cls for a labelled named data set)")
    p.add_argument("--n", type=int_in(2, MAX_N), default=None,
                   help=f"generated images (run: default {DEFAULT_N}, or for a run trained on data.classes the "
                   "number of real images of those classes when smaller; --real/--fake: default every image "
                   f"of the folders, at most {MAX_DEFAULT_N}); the real split must hold at least as many")
    p.add_argument("--split", default="test", choices=("test", "train", "all"),
                   help="real split (default test)")
    p.add_argument("--real", help="real images: a dataset name or a folder (two-set mode)")
    p.add_argument("--fake", help="folder of generated images (two-set mode)")
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw generator, not its EMA")
    p.add_argument("--truncation", type=float, metavar="T",
                   help="generate with noise entries |z| > T redrawn (truncation trick; default off); "
                   "the record and protocol say so")
    p.add_argument("--bn-batches", type=int_in(1, 100_000), metavar="N",
                   help="first recompute the generator's BatchNorm statistics from N batches of its own samples, "
                   "as training does with train.ema_bn_batches before it saves (for runs saved without it); "
                   "the record says so")
    p.add_argument("--checkpoint", help="a checkpoint directory (default: newest)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="feature extraction precision (fp32 is the reference)")
    p.add_argument("--batch-size", type=BATCH, default=64)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--json", help="also write the result to this JSON file")
    add_threads_option(p)
    p.set_defaults(func=run)


def default_metrics(real: str) -> str:
    """The domain-classifier score needs a labelled named data set."""
    from ganforge.data.sources import canonical_name

    return "fid,kid,pr,cls" if canonical_name(real) else "fid,kid,pr"


def print_table(result: dict, out=None) -> None:
    out = out or sys.stdout  # looked up at call time: sys.stdout may have been replaced
    for key, value in result.items():
        if key in ("protocol", "notes", "skipped"):
            continue
        if isinstance(value, tuple) and len(value) == 2:  # (mean, std) of KID and the scores; lists print as lists
            text = f"{value[0]:.6g} +- {value[1]:.2g}"
        elif isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = str(value)
        print(f"{key:<24} {text}", file=out)
    if "protocol" in result:
        print(f"protocol: {result['protocol']}", file=out)
    for name in result.get("skipped", []):
        print(f"skipped: {name}", file=out)
    for note in result.get("notes", []):
        print(f"note: {note}", file=out)


def folder_without_splits(spec: str) -> bool:
    """``spec`` is a plain image folder: no data set name, no train/test subfolders, IDX or CIFAR files."""
    from ganforge.data import cifar, idx
    from ganforge.data.sources import canonical_name

    path = Path(spec).expanduser()
    if canonical_name(spec) is not None or not path.is_dir():
        return False
    if any((path / s).is_dir() for s in ("train", "test")):
        return False
    return not idx.find_idx_files(path) and cifar.find_cifar_dir(path) is None


def two_set_n(real: str, fake: str) -> int:
    """``--n`` when not given in two-set mode: every image both folders hold, at most :data:`MAX_DEFAULT_N`."""
    from ganforge.metrics.fakes import count_folder_images

    n = min(count_folder_images(fake), MAX_DEFAULT_N)
    if folder_without_splits(real):
        n = min(n, count_folder_images(real))
    return max(n, 2)  # fewer is refused with the reason by the evaluation itself


def default_n(cfg, split: str) -> int:
    """``--n`` when not given: 10000, or fewer for a run trained on some classes (``data.classes``).

    Such a run is compared with the split's images of those classes only, e.g.
    1,000 for class 9 of Fashion-MNIST's test split. The default is then that
    count when it is below 10000 (``fid1k_test``), rather than a refusal of an
    option the user did not give; an explicit larger ``--n`` is still refused.
    """
    if cfg.data.classes is None:
        return DEFAULT_N
    from ganforge.metrics.evaluator import real_images_for

    # Loads the split once more: its class filter decides how many images there are to compare with.
    _, images = real_images_for(cfg.data.dataset, split, DEFAULT_N, image_size=cfg.data.image_size,
                                channels=cfg.data.channels, root=cfg.data.root, classes=cfg.data.classes)
    return int(images.shape[0])


def _compute(compute_metrics, *args, **kwargs) -> dict:
    """compute_metrics, with its complaints about ``n`` blamed on the ``--n`` option."""
    try:
        return compute_metrics(*args, **kwargs)
    except ConfigError as exc:
        if exc.where == "n":
            raise ConfigError("--n", exc.reason) from None
        raise


def run(args: argparse.Namespace) -> int:
    use_threads_option(args)
    import json

    from ganforge.commands._paths import check_output_file
    from ganforge.devices import resolve_device
    from ganforge.metrics.compute import append_jsonl, compute_metrics

    from ganforge.sampling import check_truncation

    check_truncation(args.truncation)
    if args.truncation is not None and not args.run_dir:
        raise ConfigError("--truncation", "applies to a run's generator, not to --fake images")
    if args.bn_batches and not args.run_dir:
        raise ConfigError("--bn-batches", "applies to a run's generator, not to --fake images")
    if args.run_dir and (args.fake or args.real):
        raise ConfigError("--fake", "give either RUN_DIR or --real/--fake, not both")
    if not args.run_dir and not (args.real and args.fake):
        raise ConfigError("RUN_DIR", "give a run directory, or both --real and --fake")
    # Everything that can be checked up front is, before minutes of feature extraction.
    if args.json:
        check_output_file(args.json, "--json")
    if args.run_dir and Path(args.run_dir, "config.yaml").is_file():
        check_output_file(Path(args.run_dir) / "metrics.jsonl", "RUN_DIR")
    device = resolve_device(args.device, "--device")
    common = dict(device=device, precision=args.precision, batch_size=args.batch_size, seed=args.seed,
                  require_n_real=True)
    if args.run_dir:
        from ganforge.artifacts import load_generator
        from ganforge.sampling import generate

        G, cfg, step = load_generator(args.run_dir, args.checkpoint, ema=not args.no_ema, device=device)
        if args.bn_batches:
            from ganforge.tasks import task_class
            from ganforge.train.ema import generator_draws, recompute_batchnorm_statistics

            if not recompute_batchnorm_statistics(G, generator_draws(task_class(cfg), cfg, device), args.bn_batches):
                raise ConfigError("--bn-batches", "this run's generator has no BatchNorm layers")
        n = args.n if args.n is not None else default_n(cfg, args.split)
        # Labels of a conditional generator come from data.classes when set (sampling.class_labels).
        stream = generate(G, cfg, n, seed=args.seed, device=device, batch_size=args.batch_size,
                          truncation=args.truncation)
        real = cfg.data.dataset
        metrics = args.metrics or default_metrics(real)
        result = _compute(compute_metrics, stream, real, args.split, metrics.split(","), n,
                          image_size=cfg.data.image_size, channels=cfg.data.channels, root=cfg.data.root,
                          classes=cfg.data.classes, progress=lambda m: None, **common)
        result = {"step": step, "generator": "raw" if args.no_ema else "ema-if-present", **result}
        if args.bn_batches:
            result["bn_batches"] = args.bn_batches
            result["protocol"] += (f"; generator BatchNorm statistics recomputed from {args.bn_batches} batches "
                                   f"of {cfg.train.batch_size} samples")
        if args.truncation is not None:  # the same metric names, so the record and protocol must say it
            result["truncation"] = args.truncation
            result["protocol"] += f"; generator noise truncated at |z| <= {args.truncation:g} (resampled)"
        # Notes are for the reader of this output; the run's log keeps the measurements.
        append_jsonl(Path(args.run_dir) / "metrics.jsonl",
                     {"event": "eval", **{k: v for k, v in result.items() if k != "notes"}})
    else:
        metrics = args.metrics or default_metrics(args.real)
        from ganforge.metrics.catalog import get_metrics

        get_metrics(metrics.split(","))  # a misspelt name is reported before any folder is read
        if args.n is None:  # every image there is (a smaller real split is used whole, and named so)
            n, common["require_n_real"] = two_set_n(args.real, args.fake), False
        else:
            n = args.n
        split_name = "folder" if folder_without_splits(args.real) else None
        result = _compute(compute_metrics, args.fake, args.real, args.split, metrics.split(","), n,
                          split_name=split_name, **common)
    print_table(result)
    if args.json:  # the table is printed first: a full disk here loses no result
        from ganforge.atomic import write_text

        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(result, indent=1, default=list))
    return 0
