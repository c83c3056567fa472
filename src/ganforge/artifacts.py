"""Runs and saved generators on disk: what training writes and inference reads.

A **run directory** (written by the trainer) holds ``config.yaml`` and
``checkpoints/step_*/`` (:mod:`ganforge.checkpoint`). A **saved generator**
(``ganforge export``, :func:`ganforge.models.save_pretrained`) is one folder
``config.yaml`` + ``generator.safetensors`` + ``README.md`` + ``export.json``
(:mod:`ganforge.models.pretrained`). :func:`load_generator` accepts either;
sampling, evaluation, serving and the inpainting pipeline
(``InpaintingPipeline.from_run``) all load through it, so inference never
imports training code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ganforge import checkpoint as ckpt
from ganforge.config import RunConfig, load_config
from ganforge.errors import CheckpointError, ConfigError
from ganforge.models import build_models, from_pretrained, get_family, save_pretrained
from ganforge.models.card import model_card, run_evaluations
from ganforge.models.pretrained import WEIGHTS, check_target, is_saved_generator, saved_info

EXPORT_WEIGHTS = WEIGHTS  # "generator.safetensors", the weights file of a saved generator


def load_generator(run_dir: str | Path, checkpoint: str | Path | None = None, ema: bool = True,
                   device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig, int]:
    """The generator of a run, or of a saved generator folder, in eval mode: ``(G, config, step)``.

    For a run: the EMA generator when the run has one and ``ema`` is true, from
    ``checkpoint`` (a checkpoint directory; default the newest one that verifies).
    A saved generator folder holds one generator, so ``checkpoint`` does not apply
    to it (a ConfigError names it) and neither does ``ema``; its ``step`` is the one it records.
    """
    G, cfg, step, _ = load_generator_and_source(run_dir, checkpoint, ema, device)
    return G, cfg, step


def load_generator_and_source(path: str | Path, checkpoint=None, ema: bool = True, device="cpu"
                               ) -> tuple[nn.Module, RunConfig, int, str]:
    """:func:`load_generator`, also saying which weights these are: ``"ema"`` or ``"generator"``
    (for a saved generator folder, what its ``export.json`` records; ``"generator"`` when it records nothing valid)."""
    path = Path(path)
    if is_saved_generator(path):
        if checkpoint is not None:
            raise ConfigError("--checkpoint", f"{path} is a saved generator (one set of weights), not a run")
        G, cfg, step = from_pretrained(path, device=device)
        source = saved_info(path).get("source")
        return G, cfg, step, source if source in ("ema", "generator") else "generator"
    if not (path / "config.yaml").is_file():
        raise CheckpointError(path, "not a run directory or saved generator (no config.yaml)")
    cfg = load_config(path / "config.yaml")
    c = ckpt.load_checkpoint(Path(checkpoint)) if checkpoint else ckpt.find_latest(path)
    if c is None:
        raise CheckpointError(path / "checkpoints", "no valid checkpoint in this run")
    G, _ = build_models(cfg, training=False)
    name = "G_ema" if ema and "G_ema" in c.weights else "G"
    if name not in c.weights:
        raise CheckpointError(c.path, "has no generator weights")
    ckpt.load_module_state(G, c.weights[name], c.path / "weights.safetensors")
    return G.to(device).eval().requires_grad_(False), cfg, c.step, "ema" if name == "G_ema" else "generator"


def export_generator(run_dir: str | Path, out_dir: str | Path, ema: bool = True) -> Path:
    """Save a run's generator (EMA by default) as one folder with a model card; returns the folder.

    The card lists the evaluations in the run's ``metrics.jsonl`` that measured
    these weights (see :mod:`ganforge.models.card`). Exporting a saved generator
    folder again copies it with the card it already has.
    """
    src = Path(run_dir)
    check_target(Path(out_dir))  # before any loading: a folder of other files is refused at once
    G, cfg, step, source = load_generator_and_source(src, None, ema, "cpu")
    if is_saved_generator(src):
        try:
            card = (src / "README.md").read_text(encoding="utf-8") if (src / "README.md").is_file() else None
        except (OSError, UnicodeDecodeError):
            card = None  # an unreadable card is written anew
        return save_pretrained(G, out_dir, step=step if step >= 0 else None, card=card, source=source)
    family = get_family(cfg.model.arch)
    used_ema = source == "ema"
    mine, earlier = run_evaluations(src, step, used_ema, run_has_ema=cfg.train.ema_decay > 0)
    card = model_card(cfg, step, family.inputs, family.description, ema_weights=used_ema,
                      evaluations=mine, earlier=earlier)
    return save_pretrained(G, out_dir, step=step, card=card, source=source)
