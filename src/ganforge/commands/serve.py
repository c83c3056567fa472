"""``ganforge serve``: a local web page to sample from runs and inpaint uploaded images."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    from ganforge.serve import MAX_PIXELS, MAX_UPLOAD_MB

    p = sub.add_parser("serve", help="a local web page for generation and inpainting (needs ganforge[serve])",
                       description="Serve a Gradio page: Generate (seed, count, class, truncation, latent "
                                   "interpolation) for image-generation runs, Inpaint (upload, brush or mask, "
                                   "ganforge next to OpenCV Telea) for inpainting runs.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories or exported generators")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-ema", action="store_true", help="use the raw generators, not their EMA")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help=f"largest upload in pixels (default {MAX_PIXELS})")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB,
                   help=f"largest upload in MB (default {MAX_UPLOAD_MB})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    from ganforge.devices import resolve_device
    from ganforge.errors import ConfigError
    from ganforge.serve import server
    from ganforge.serve.app import build_app, import_gradio, theme
    from ganforge.serve.handlers import load_runs

    if not 0 <= args.port <= 65535:
        raise ConfigError("--port", f"must be in [0, 65535], got {args.port}")
    if args.max_pixels <= 0:
        raise ConfigError("--max-pixels", f"must be positive, got {args.max_pixels}")
    # nan passes a "<= 0" test and inf or 1e400 make no byte limit: both are refused here.
    if not (math.isfinite(args.max_upload_mb) and 0 < args.max_upload_mb <= 2**20):
        raise ConfigError("--max-upload-mb", f"must be a number of MB in (0, {2**20}], got {args.max_upload_mb}")
    device = str(resolve_device(args.device, "--device"))
    gr = import_gradio()  # the missing extra is a one-line error before any run is loaded
    try:
        with server.work_dir() as work:  # removed on every exit: results and uploads stay private
            generators, inpainters = load_runs(args.runs, device, ema=not args.no_ema)
            for name, r in generators.items():
                print(f"generator {name}: {r.cfg.model.arch}, step {r.step}"
                      f"{f', {r.num_classes} classes' if r.num_classes else ''}")
            for name, pipe in inpainters.items():
                print(f"inpainting {name}: step {pipe.step}")
            app = build_app(generators, inpainters, args.max_pixels, args.max_upload_mb, out_dir=work / "results")
            server.run(app, args.host, args.port, args.max_pixels, args.max_upload_mb, theme(gr))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the normal way to stop a server
        print("stopped", file=sys.stderr)
    return 0
