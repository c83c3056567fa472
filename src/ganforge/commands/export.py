"""``ganforge export``: write a run's generator to share or deploy it.

``--format safetensors`` (default): one self-describing folder, ``config.yaml`` +
``generator.safetensors`` + ``README.md`` (a model card: data set, training steps,
measured metrics and their protocol) + ``export.json``, written by
:func:`ganforge.models.save_pretrained`; every command that takes a run directory
takes it too. ``--format onnx``: ``generator.onnx`` (+ ``config.yaml``,
``export.json``), checked against PyTorch with onnxruntime; needs the ``onnx`` extra.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("export", help="export a run's generator (safetensors or ONNX) to share it")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                   help="a folder with config.yaml, safetensors weights and a model card (default), "
                        "or an ONNX graph checked with onnxruntime")
    p.add_argument("--no-ema", action="store_true", help="export the raw generator, not its EMA")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.commands._paths import check_folder_target

    if args.format == "onnx":
        from ganforge.onnx_export import export_run_onnx, require_onnx

        require_onnx()  # before loading anything: the missing extra is the one-line answer
        check_folder_target(args.out, "--out")
        r = export_run_onnx(args.run_dir, args.out, ema=not args.no_ema)
        inputs = ", ".join(f"{k} {tuple(v)}" for k, v in r.inputs.items())
        print(f"exported {r.kind} to {r.path} (ONNX opset {r.opset}; inputs: {inputs})")
        print(f"onnxruntime vs PyTorch: max abs difference {r.max_abs_diff:.3g} "
              f"(another batch{' and size' if 'height' in str(r.inputs) else ''}: "
              f"{r.max_abs_diff_other_batch:.3g}; tolerance {r.tolerance:g})")
        return 0
    from ganforge.artifacts import export_generator
    from ganforge.models.pretrained import saved_step

    check_folder_target(args.out, "--out")
    out = export_generator(args.run_dir, args.out, ema=not args.no_ema)
    step = saved_step(out)
    print(f"exported the generator{f' of step {step}' if step >= 0 else ''} to {out} (model card: README.md)")
    return 0
