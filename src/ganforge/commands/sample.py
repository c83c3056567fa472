"""``ganforge sample``: draw images from a trained run.

Bounds (checked before any image is generated): a grid holds at most
:data:`MAX_GRID` images and :data:`MAX_GRID_PIXELS` pixels; ``--files`` writes
at most :data:`MAX_FILES` images and first checks that the disk has room for
them (estimated at their uncompressed size, which PNG rarely beats by much on
generated images).
"""

from __future__ import annotations

import argparse

from ganforge.commands._options import SEED, int_in, add_threads_option, use_threads_option
from ganforge.errors import ConfigError

MAX_GRID = 4096  # images in one grid
MAX_GRID_PIXELS = 8192 * 8192  # a larger PNG is unwieldy (and PIL warns about decompression bombs)
MAX_FILES = 1_000_000  # images written with --files


def register(sub) -> None:
    p = sub.add_parser("sample", help="sample images from a run",
                       description="Write a grid (or individual PNGs) of images from a run's generator. "
                                   f"A grid holds at most {MAX_GRID} images; --files writes up to {MAX_FILES}.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--n", type=int_in(1, MAX_FILES), default=64,
                   help=f"number of images (default 64; at most {MAX_GRID} in a grid, {MAX_FILES} with --files)")
    p.add_argument("--out", default="samples.png", help="output PNG grid, or a directory with --files")
    p.add_argument("--files", action="store_true", help="write one PNG per image into the --out directory")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--class", dest="label", type=int, help="class id for conditional runs")
    p.add_argument("--per-class", type=int_in(1, MAX_GRID), metavar="K",
                   help="one row of K images per class (overrides --n)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--checkpoint", help="a checkpoint directory (default: newest)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--truncation", type=float, metavar="T",
                   help="redraw noise entries with |z| > T (truncation trick; default off)")
    p.add_argument("--interpolate", type=int, nargs=2, metavar=("SEED_A", "SEED_B"),
                   help="write a strip walking the latent space from SEED_A's image to SEED_B's")
    p.add_argument("--steps", type=int_in(2, MAX_GRID), default=8, help="images in the --interpolate strip (default 8)")
    p.add_argument("--mode", choices=("slerp", "lerp"), default="slerp",
                   help="interpolation path (default slerp: keeps the typical norm of the noise)")
    p.add_argument("--gif", metavar="PATH", help="with --interpolate: also an animated GIF, there and back")
    add_threads_option(p)
    p.set_defaults(func=run)


def check_count(n: int, files: bool, image_shape: tuple[int, int, int], option: str, nrow: int | None = None) -> None:
    """Refuse more images than a grid (or ``--files``) may hold; ``image_shape`` is (C, H, W)."""
    import math

    _, h, w = image_shape
    if files:
        if n > MAX_FILES:
            raise ConfigError(option, f"{n} images; --files writes at most {MAX_FILES}")
        return
    if n > MAX_GRID:
        raise ConfigError(option, f"{n} images; a grid holds at most {MAX_GRID} (use --files for more)")
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    pixels = (rows * (h + 2) + 2) * (cols * (w + 2) + 2)
    if pixels > MAX_GRID_PIXELS:
        raise ConfigError(option, f"a grid of {n} images of {w}x{h} would have {pixels} pixels, more than "
                                  f"{MAX_GRID_PIXELS}; use fewer images or --files")


def run(args: argparse.Namespace) -> int:
    use_threads_option(args)
    import torch

    from ganforge.artifacts import load_generator
    from ganforge.commands._paths import check_free_space, check_output_dir, check_output_file
    from ganforge.devices import resolve_device
    from ganforge.atomic import remove_stale_temporaries_in
    from ganforge.imageio import save_grid, save_png, to_uint8
    from ganforge.sampling import generate, per_class_labels
    from ganforge.tasks import noise_task

    if args.per_class is not None and args.label is not None:
        raise ConfigError("--per-class", "give --per-class or --class, not both")
    if args.gif and not args.interpolate:
        raise ConfigError("--gif", "only with --interpolate SEED_A SEED_B")
    out = check_output_dir(args.out, "--out") if args.files else check_output_file(args.out, "--out")
    gif = check_output_file(args.gif, "--gif") if args.gif else None
    device = resolve_device(args.device, "--device")
    G, cfg, step = load_generator(args.run_dir, args.checkpoint, ema=not args.no_ema, device=device)
    noise_task(cfg, args.run_dir)  # an inpainting run, say, is refused in one line naming the run
    if args.interpolate:
        return _interpolate(args, G, cfg, step, out, gif, device)
    labels, nrow = None, None
    if args.per_class is not None:
        labels = per_class_labels(cfg, args.per_class)
        nrow = args.per_class
    n = len(labels) if labels is not None else args.n
    shape = (cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    check_count(n, args.files, shape, "--per-class" if labels is not None else "--n", nrow)
    if args.files:
        c, h, w = shape
        check_free_space(out, n * (c * h * w + h + 1024), "--out")  # raw pixels + PNG row filters + headers
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries_in(out)  # once here, not per image: each tidy lists the folder
        i = 0
        for batch in generate(G, cfg, n, args.seed, args.label, device=device, labels=labels,
                              truncation=args.truncation):
            for img in to_uint8(batch).permute(0, 2, 3, 1).cpu().numpy():
                save_png(img, out / f"{i:06d}.png", tidy=False)
                i += 1
        print(f"wrote {i} images from step {step} to {out}")
    else:
        images = torch.cat(list(generate(G, cfg, n, args.seed, args.label, device=device, labels=labels,
                                         truncation=args.truncation)))
        save_grid(images, out, nrow=nrow)
        print(f"wrote a grid of {n} images from step {step} to {out}")
        if labels is not None:  # which class each row shows, named where the data set names them
            from ganforge.class_names import write_row_labels

            print(f"row labels: {write_row_labels(out.with_suffix('.classes.txt'), cfg.label_classes, cfg.data.dataset)}")
    return 0


def _interpolate(args: argparse.Namespace, G, cfg, step: int, out, gif, device) -> int:
    """``--interpolate A B``: one strip PNG of ``--steps`` images (and optionally a GIF)."""
    import torch

    from ganforge.imageio import save_grid, save_gif
    from ganforge.sampling import interpolation_latents

    z, y = interpolation_latents(cfg, args.interpolate[0], args.interpolate[1], args.steps, args.mode,
                                 args.label, args.truncation)
    with torch.inference_mode():
        images = G(z.to(device), None if y is None else y.to(device)).float().cpu()
    out = save_grid(images, out, nrow=args.steps)
    print(f"wrote an interpolation strip of {args.steps} images from step {step} to {out}")
    if gif is not None:
        gif = save_gif(images, gif)
        print(f"wrote an animated GIF to {gif}")
    return 0
