"""ONNX export of generators, checked against PyTorch with onnxruntime (inference only).

The run's task says how its generator is called (:meth:`~ganforge.tasks.base.Task.example_inputs`,
:meth:`~ganforge.tasks.base.Task.export_module`); graphs of the built-in tasks
(all float32, batch dimension dynamic):

* image generators (MLP, DCGAN, ResNet): ``z (N, z_dim) -> image (N, C, H, W)`` in
  [-1, 1]; class-conditional runs take ``label (N,)`` int64 as a second input.
* the inpainting generator: ``image (N, C, H, W)`` in [-1, 1] and ``mask (N, 1, H, W)``
  (1 = missing) ``-> image (N, C, H, W)``, composited so that known pixels are the
  input's. Height and width are dynamic but must be **multiples of 4** (the two
  stride-2 stages): the PyTorch model pads other sizes itself, a branch on the shape
  that a traced graph cannot keep, so pad (e.g. reflect) before calling the graph and
  crop after, as :func:`ganforge.models.encoder_decoder.pad_to_multiple` does.

The models are exported in eval mode (BatchNorm with its running statistics,
conditional BatchNorm's per-class gains as a Gather) from a copy whose spectral
normalisations are folded into plain weights: in eval mode spectral norm is a fixed
rescaling, so folding changes no output and keeps the graph free of the power
iteration's bookkeeping.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. These
models are static feed-forward graphs, which tracing captures exactly; the newer
dynamo-based exporter (torch's default) also needs the ``onnxscript`` package and
turns the shape-dependent padding branch of the inpainting model into guards, for
no gain here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.config import RunConfig, dump_yaml
from ganforge.errors import ConfigError, GanforgeError

ONNX_FILE = "generator.onnx"
OPSET = 17
TOLERANCE = 1e-4  # fp32 parity bound between onnxruntime and PyTorch
INSTALL_HINT = "pip install 'ganforge[onnx]' (onnx and onnxruntime)"


class OnnxParityError(GanforgeError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""


@dataclass
class OnnxReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime reproduced PyTorch."""

    path: str
    kind: str                    # "generator", "conditional generator" or "<task> generator" (e.g. "inpaint generator")
    inputs: dict[str, list]      # input name -> shape (strings for dynamic axes)
    max_abs_diff: float          # over the fixed check batch
    max_abs_diff_other_batch: float  # another batch size (inpainting: and another H, W)
    tolerance: float
    opset: int


def require_onnx() -> None:
    """Raise a one-line ConfigError naming the extra when onnx / onnxruntime are missing."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError("--format onnx", f"needs {' and '.join(missing)}: {INSTALL_HINT}")


def fold_spectral_norm(G: nn.Module, cfg: RunConfig) -> nn.Module:
    """``G`` in eval mode with spectral norm folded into plain weights (a new module; ``G`` is untouched).

    The folded generator is built from ``cfg`` without spectral norm and loaded with
    the effective eval-mode weights ``W / sigma``. (Removing the parametrisations from
    a deep copy would not do: the copy shares its dynamically created class with the
    original, and removal edits that class.)
    """
    from torch.nn.utils import parametrize

    from ganforge.models import build_models

    G = G.eval()
    folded = {}
    for name, m in G.named_modules():
        if parametrize.is_parametrized(m):
            for pname in m.parametrizations.keys():
                folded[f"{name}.{pname}" if name else pname] = getattr(m, pname).detach().clone()
    if not folded:
        return G
    state = {k: v for k, v in G.state_dict().items() if "parametrizations." not in k}
    state.update(folded)
    plain_cfg = copy.deepcopy(cfg)
    plain_cfg.model.spectral_norm_g = False
    plain, _ = build_models(plain_cfg)
    plain.load_state_dict(state)
    return plain.to(next(G.parameters()).device).eval().requires_grad_(False)


def _example_inputs(task, cfg: RunConfig, batch: int, seed: int, size: int | None = None
                    ) -> tuple[tuple[Tensor, ...], list[str]]:
    """The task's fixed, seeded inputs for tracing and checking: (tensors, input names)."""
    inputs = task.example_inputs(cfg, batch, torch.Generator().manual_seed(seed), size)
    return tuple(inputs.values()), list(inputs)


def _kind(task, cfg: RunConfig) -> str:
    if task.from_noise:
        return "conditional generator" if cfg.model.num_classes else "generator"
    return f"{task.name} generator"


def _dynamic_axes(names: list[str], dynamic_size: bool) -> dict[str, dict[int, str]]:
    axes = {n: {0: "batch"} for n in names + ["output"]}
    if dynamic_size:  # image inputs and the output keep H and W dynamic
        for n in names + ["output"]:
            if n != "label":
                axes[n].update({2: "height", 3: "width"})
    return axes


def _run_onnx(path: Path, names: list[str], inputs: tuple[Tensor, ...]) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]


def _max_diff(model: nn.Module, path: Path, names: list[str], inputs: tuple[Tensor, ...]) -> float:
    with torch.inference_mode():
        ref = model(*inputs).float().numpy()
    got = _run_onnx(path, names, inputs)
    if got.shape != ref.shape:
        raise OnnxParityError(path, f"onnxruntime returned shape {got.shape}, PyTorch {ref.shape}")
    return float(np.abs(got - ref).max())


def export_model(G: nn.Module, cfg: RunConfig, path: str | Path, batch: int = 4, seed: int = 0,
                 opset: int = OPSET, tolerance: float = TOLERANCE) -> OnnxReport:
    """Export generator ``G`` (built from ``cfg``) to ``path`` and check it with onnxruntime.

    The check runs the graph and PyTorch on a fixed seeded batch of ``batch``
    inputs (and on ``batch + 3`` to exercise the dynamic batch axis); a max abs
    difference above ``tolerance`` raises :class:`OnnxParityError`.
    """
    from ganforge.tasks import task_class

    require_onnx()
    task = task_class(cfg)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = task.dynamic_size
    folded = fold_spectral_norm(copy.deepcopy(G).float().cpu(), cfg)  # the caller's G stays where it is
    model = task.export_module(folded, cfg).eval()
    inputs, names = _example_inputs(task, cfg, batch, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; parity is checked below
        torch.onnx.export(model, inputs, str(path), input_names=names, output_names=["output"],
                          dynamic_axes=_dynamic_axes(names, dynamic), opset_version=opset, dynamo=False)
    import onnx

    onnx.checker.check_model(str(path))
    diff = _max_diff(model, path, names, inputs)
    # Another batch size (and for image-to-image tasks another multiple-of-4 size): the axes are really dynamic.
    other_size = 4 * (cfg.data.image_size // 4 + 1) if dynamic else None
    other, _ = _example_inputs(task, cfg, batch + 3, seed + 1, other_size)
    diff_other = _max_diff(model, path, names, other)
    worst = max(diff, diff_other)
    if not worst <= tolerance:  # also catches NaN
        raise OnnxParityError(path, f"onnxruntime differs from PyTorch by {worst:.3g} (tolerance {tolerance:g})")
    shapes = {n: ["batch", *t.shape[1:]] for n, t in zip(names, inputs)}
    if dynamic:
        shapes = {n: ["batch", v[1], "height", "width"] if len(v) == 4 else v for n, v in shapes.items()}
    return OnnxReport(str(path), _kind(task, cfg), shapes, diff, diff_other, tolerance, opset)


def export_run_onnx(run_dir: str | Path, out_dir: str | Path, ema: bool = True,
                    checkpoint: str | Path | None = None) -> OnnxReport:
    """Write ``out_dir/generator.onnx`` (+ ``config.yaml``, ``export.json`` with the parity check) for a run.

    The folder is written as :func:`ganforge.models.save_pretrained` writes one: into a
    temporary sibling, checked, fsynced and renamed into place, so a kill or a full
    disk leaves the previous export (or none), never a truncated graph, and no
    file is ever written through a symbolic link planted in ``out_dir``.

    Raises:
        CheckpointError: ``out_dir`` is a link, a file, or a folder of other files;
            or the write failed (nothing was written).
        OnnxParityError: onnxruntime does not reproduce PyTorch.
    """
    from ganforge.artifacts import load_generator_and_source
    from ganforge.models.pretrained import check_target, write_folder

    require_onnx()
    out = check_target(Path(out_dir))
    G, cfg, step, source = load_generator_and_source(run_dir, checkpoint, ema=ema)
    reports = []

    def write(tmp: Path) -> None:
        report = export_model(G, cfg, tmp / ONNX_FILE)
        report.path = str(out / ONNX_FILE)  # where it will be once renamed into place
        meta = {"step": step if step >= 0 else None, "source": source, "format": "onnx", **asdict(report)}
        for name, text in (("config.yaml", dump_yaml(cfg)), ("export.json", json.dumps(meta, indent=1))):
            with open(tmp / name, "x", encoding="utf-8") as f:
                f.write(text)
        reports.append(report)

    write_folder(out, write, "ONNX export")
    return reports[0]
