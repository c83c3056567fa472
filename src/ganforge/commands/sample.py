"""``ganforge sample``: draw images from a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("sample", help="sample images from a run",
                       description="Write a grid (or individual PNGs) of images from a run's generator.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", default="samples.png", help="output PNG grid, or a directory with --files")
    p.add_argument("--files", action="store_true", help="write one PNG per image into the --out directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="label", type=int, help="class id for conditional runs")
    p.add_argument("--per-class", type=int, metavar="K", help="grid with one row of K images per class")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its EMA")
    p.add_argument("--checkpoint", help="a checkpoint directory (default: newest)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--truncation", type=float, metavar="T",
                   help="redraw noise entries with |z| > T (truncation trick; default off)")
    p.add_argument("--interpolate", type=int, nargs=2, metavar=("SEED_A", "SEED_B"),
                   help="write a strip walking the latent space from SEED_A's image to SEED_B's")
    p.add_argument("--steps", type=int, default=8, help="images in the --interpolate strip (default 8)")
    p.add_argument("--mode", choices=("slerp", "lerp"), default="slerp",
                   help="interpolation path (default slerp: keeps the typical norm of the noise)")
    p.add_argument("--gif", metavar="PATH", help="with --interpolate: also an animated GIF, there and back")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ganforge.imageio import save_grid, save_png, to_uint8
    from ganforge.artifacts import load_generator
    from ganforge.sampling import generate, per_class_labels

    if args.n <= 0:
        raise ConfigError("--n", f"must be positive, got {args.n}")
    if args.gif and not args.interpolate:
        raise ConfigError("--gif", "only with --interpolate SEED_A SEED_B")
    G, cfg, step = load_generator(args.run_dir, args.checkpoint, ema=not args.no_ema, device=args.device)
    if args.interpolate:
        return _interpolate(args, G, cfg, step)
    labels, nrow = None, None
    if args.per_class:
        labels = per_class_labels(cfg, args.per_class)
        nrow = args.per_class
    n = len(labels) if labels is not None else args.n
    out = Path(args.out)
    if args.files:
        out.mkdir(parents=True, exist_ok=True)
        i = 0
        for batch in generate(G, cfg, n, args.seed, args.label, device=args.device, labels=labels,
                                  truncation=args.truncation):
            for img in to_uint8(batch).permute(0, 2, 3, 1).cpu().numpy():
                save_png(img, out / f"{i:06d}.png")
                i += 1
        print(f"wrote {i} images from step {step} to {out}")
    else:
        images = torch.cat(list(generate(G, cfg, n, args.seed, args.label, device=args.device, labels=labels,
                                  truncation=args.truncation)))
        save_grid(images, out, nrow=nrow)
        print(f"wrote a grid of {n} images from step {step} to {out}")
    return 0


def _interpolate(args: argparse.Namespace, G, cfg, step: int) -> int:
    """``--interpolate A B``: one strip PNG of ``--steps`` images (and optionally a GIF)."""
    import torch

    from ganforge.imageio import save_grid, save_gif
    from ganforge.sampling import interpolation_latents

    z, y = interpolation_latents(cfg, args.interpolate[0], args.interpolate[1], args.steps, args.mode,
                                 args.label, args.truncation)
    with torch.inference_mode():
        images = G(z.to(args.device), None if y is None else y.to(args.device)).float().cpu()
    out = save_grid(images, Path(args.out), nrow=args.steps)
    print(f"wrote an interpolation strip of {args.steps} images from step {step} to {out}")
    if args.gif:
        gif = save_gif(images, Path(args.gif))
        print(f"wrote an animated GIF to {gif}")
    return 0
