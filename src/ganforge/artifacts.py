"""Runs and exported generators on disk: what training writes and inference reads.

A **run directory** (written by the trainer) holds ``config.yaml`` and
``checkpoints/step_*/`` (:mod:`ganforge.checkpoint`). An **exported generator**
(``ganforge export``) is a directory ``config.yaml`` + ``generator.safetensors``
(+ ``export.json``). :func:`load_generator` accepts either; sampling, evaluation
and the inpainting pipeline (``InpaintingPipeline.from_run``) all load through it,
so inference never imports training code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ganforge import checkpoint as ckpt
from ganforge.config import RunConfig, dump_yaml, load_config
from ganforge.errors import CheckpointError
from ganforge.models import build_models
from ganforge.weights import load_weights

EXPORT_WEIGHTS = "generator.safetensors"


def load_generator(run_dir: str | Path, checkpoint: str | Path | None = None, ema: bool = True,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig, int]:
    """The generator of a run (or of an exported generator directory) in eval mode: ``(G, config, step)``.

    Uses the EMA generator when the run has one and ``ema`` is true. ``checkpoint``
    selects a checkpoint directory (default: the newest one that verifies).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(run_dir, "not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    if (run_dir / EXPORT_WEIGHTS).is_file() and not (run_dir / "checkpoints").is_dir():
        G, _ = build_models(cfg, training=False)  # an exported generator (ganforge export)
        load_weights(G, run_dir / EXPORT_WEIGHTS)
        return G.to(device).eval().requires_grad_(False), cfg, -1
    c = ckpt.load_checkpoint(Path(checkpoint)) if checkpoint else ckpt.find_latest(run_dir)
    if c is None:
        raise CheckpointError(run_dir / "checkpoints", "no valid checkpoint in this run")
    G, _ = build_models(cfg, training=False)
    name = "G_ema" if ema and "G_ema" in c.weights else "G"
    if name not in c.weights:
        raise CheckpointError(c.path, "has no generator weights")
    ckpt.load_module_state(G, c.weights[name], c.path / "weights.safetensors")
    return G.to(device).eval().requires_grad_(False), cfg, c.step


def export_generator(run_dir: str | Path, out_dir: str | Path, ema: bool = True) -> Path:
    """Write a run's generator as ``out_dir/config.yaml`` + ``out_dir/generator.safetensors``."""
    G, cfg, step = load_generator(run_dir, ema=ema)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in G.state_dict().items()}
    meta = {"ganforge_step": str(step), "source": "ema" if ema else "generator"}
    save_file(tensors, str(out / EXPORT_WEIGHTS), metadata=meta)
    (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    (out / "export.json").write_text(json.dumps({"step": step, **meta}, indent=1), encoding="utf-8")
    return out
