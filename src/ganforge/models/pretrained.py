"""A generator as one self-describing folder: :func:`save_pretrained` and :func:`from_pretrained`.

Layout (what ``ganforge export`` writes)::

    config.yaml             the RunConfig the generator was built from (G.config)
    generator.safetensors   G's state_dict; metadata: format, arch, source, ganforge_step
    README.md               the model card (ganforge.models.card): data, training steps, metrics
    export.json             {"format": "safetensors", "step", "source", "arch", ...}

Every consumer that takes a run directory also takes such a folder
(:func:`ganforge.artifacts.load_generator`). Folders written before the model
card existed (no README.md) load the same way. An ONNX export
(``generator.onnx`` + ``config.yaml``) is not loadable here and says so.

Writing is atomic: the files go into a fresh temporary sibling directory, are
fsynced, and the directory is renamed into place (swapping out a previous saved
generator at that path). Nothing is ever written through an existing path, so a
symbolic link planted in the target cannot redirect a write; a target that is
itself a link, or a non-empty directory that is not a saved generator, is
refused. A failed write (a full disk) removes the temporary directory and raises
one :class:`~ganforge.errors.CheckpointError`. What a killed writer left beside the
target (its temporary folder, or the previous folder it had swapped out) is
cleaned up by the next write to that target: see :func:`recover_interrupted`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ganforge.atomic import (SWAPPED_OUT, fsync_dir, process_runs, remove_stale_temporaries, replace_dir,
                             restore_swapped_out, temporary_prefix)
from ganforge.checkpoint import check_complete
from ganforge.config import RunConfig, dump_yaml, load_config
from ganforge.errors import CheckpointError
from ganforge.models.card import model_card
from ganforge.models.factory import build_models
from ganforge.models.families import get_family
from ganforge.weights import load_weights

CONFIG, WEIGHTS, CARD, INFO, ONNX = "config.yaml", "generator.safetensors", "README.md", "export.json", "generator.onnx"
KNOWN_FILES = frozenset({CONFIG, WEIGHTS, CARD, INFO, ONNX})  # what a saved or exported generator may hold
FORMAT = "ganforge-generator"
ONNX_ONLY = ("holds an ONNX export (generator.onnx), which runs with onnxruntime, not in ganforge; export the run "
             "with `ganforge export RUN_DIR --out DIR` (safetensors, the default) to sample, serve or inpaint with it")


def unwrap(G: nn.Module) -> nn.Module:
    """The module itself under ``torch.compile`` and (Distributed)DataParallel wrappers."""
    while True:
        if hasattr(G, "_orig_mod"):
            G = G._orig_mod
        elif isinstance(G, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            G = G.module
        else:
            return G


def is_saved_generator(path: str | Path) -> bool:
    """Whether ``path`` is a saved (or exported) generator folder rather than a run directory."""
    p = Path(path)
    return ((p / WEIGHTS).is_file() or (p / ONNX).is_file()) and not (p / "checkpoints").is_dir()


def saved_info(folder: str | Path) -> dict:
    """The folder's ``export.json`` as a dict (empty when missing or unreadable)."""
    try:
        info = json.loads((Path(folder) / INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def saved_step(folder: str | Path) -> int:
    """The training step a saved generator records (weights metadata, else export.json); -1 if none."""
    folder = Path(folder)
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:
            return int((f.metadata() or {})["ganforge_step"])
    except (SafetensorError, OSError, KeyError, ValueError, TypeError):
        pass
    step = saved_info(folder).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else -1


def from_pretrained(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig, int]:
    """``(G, cfg, step)`` from a saved generator folder: G in eval mode, without gradients, on ``device``.

    ``G.config`` is ``cfg``; ``step`` is the training step the folder records (-1 if it records none).

    Raises:
        CheckpointError: not such a folder, an ONNX-only export, or weights that do not match the config.
        ConfigError: ``config.yaml`` is invalid (e.g. an architecture that is not registered).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(folder, "not a saved generator folder (not a directory)")
    if not (folder / WEIGHTS).is_file():
        if (folder / ONNX).is_file():
            raise CheckpointError(folder, ONNX_ONLY)
        raise CheckpointError(folder, f"not a saved generator folder (no {WEIGHTS})")
    if not (folder / CONFIG).is_file():
        raise CheckpointError(folder, f"not a saved generator folder (no {CONFIG})")
    cfg = load_config(folder / CONFIG)
    G, _ = build_models(cfg, training=False)
    load_weights(G, folder / WEIGHTS)
    return G.to(device).eval().requires_grad_(False), cfg, saved_step(folder)


def save_pretrained(G: nn.Module, out_dir: str | Path, *, step: int | None = None, card: str | None = None,
                    source: str = "generator", info: dict | None = None) -> Path:
    """Write generator ``G`` (built by :func:`~ganforge.models.build_models`) as one folder; returns it.

    Args:
        G: the generator; its ``G.config`` is saved as ``config.yaml`` (wrappers are removed).
        out_dir: the folder to create (or replace, when it holds a saved generator).
        step: training steps of these weights, recorded in the weights' metadata and export.json.
        card: the ``README.md`` text; default a card from the config (no metrics).
        source: ``"ema"`` or ``"generator"``: which generator of the run these weights are.
        info: more JSON-able entries for ``export.json``.

    Raises:
        ValueError: ``G`` has no ``.config``.
        CheckpointError: the target cannot take the folder, a tensor is not finite, or the write failed.
    """
    G = unwrap(G)
    cfg = getattr(G, "config", None)
    if not isinstance(cfg, RunConfig):
        raise ValueError("the generator has no .config RunConfig: build it with ganforge.models.build_models")
    family = get_family(cfg.model.arch)
    out = check_target(Path(out_dir))
    tensors = {}
    for k, v in G.state_dict().items():
        if torch.is_floating_point(v) and not torch.isfinite(v).all():
            raise CheckpointError(out, f"refusing to save: {k} holds non-finite values")
        tensors[k] = v.detach().to("cpu").contiguous().clone()  # safetensors refuses shared storage
    meta = {"format": FORMAT, "arch": cfg.model.arch, "source": source}
    if step is not None:
        meta["ganforge_step"] = str(int(step))
    if card is None:
        card = model_card(cfg, step, family.inputs, family.description, ema_weights=source == "ema")
    record = {**meta, **(info or {}), "format": "safetensors", "step": step}  # "format" as ONNX exports say it
    texts = {CONFIG: dump_yaml(cfg), CARD: card, INFO: json.dumps(record, indent=1) + "\n"}
    _write_folder(out, tensors, meta, texts)
    return out


def check_target(out: Path) -> Path:
    """Refuse a target folder that is a link, not a directory, or a non-empty folder of other files."""
    if out.is_symlink():
        raise CheckpointError(out, "is a symbolic link; give the path of a real directory (the folder is "
                                   "written beside it and renamed into place)")
    if out.exists() and not out.is_dir():
        raise CheckpointError(out, "exists and is not a directory")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in KNOWN_FILES)
        if other:
            raise CheckpointError(out, f"is not empty and not a saved generator (it holds {other[0]!r}); "
                                       "give a new or empty directory")
    return out


def _write_folder(out: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str], texts: dict[str, str]) -> None:
    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp / WEIGHTS), metadata=meta)
        check_complete(tmp / WEIGHTS)
        for name, text in texts.items():
            with open(tmp / name, "x", encoding="utf-8") as f:
                f.write(text)

    write_folder(out, write, "generator")


def write_folder(out: Path, write: Callable[[Path], None], what: str) -> None:
    """Call ``write(tmp)`` to fill a fresh temporary sibling of ``out``; fsync; rename it into place.

    A previous folder at ``out`` is swapped out only once the new one is complete,
    so an interrupted write (a kill, a full disk) leaves the previous folder or
    none, never a partial file at ``out``. Any failure removes the temporary folder;
    an OSError becomes one :class:`CheckpointError` naming ``out`` and ``what``.
    """
    tmp = out.parent / f"{temporary_prefix(out)}{secrets.token_hex(4)}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        recover_interrupted(out)
        tmp.mkdir()
        write(tmp)
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        replace_dir(tmp, out)
        fsync_dir(out.parent)
    except BaseException as exc:
        # Whatever stopped the write (a full disk, a quota, Ctrl-C): no partial folder stays behind.
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, SafetensorError)):
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CheckpointError(out, f"could not write the {what} ({' '.join(text.split())}); "
                                       "nothing was written") from None
        raise


def recover_interrupted(out: Path) -> list[Path]:
    """Tidy what a writer of ``out`` that was killed (kill -9, power loss) left beside it.

    Only folders whose writer's process no longer runs on this machine are touched:
    its temporary sibling ``.NAME.tmp-PID-HEX`` is removed, and the previous folder it
    had swapped out (``.old-NAME-PID``) is renamed back to ``out`` when nothing took
    its place, so a kill between the two renames loses no saved work; otherwise it
    is removed. Returns the paths removed or restored.
    """
    touched = remove_stale_temporaries(out)
    if not out.parent.is_dir():
        return touched
    old_name = re.compile(rf"{re.escape(SWAPPED_OUT + out.name)}-(\d+)")
    for path in sorted(out.parent.iterdir()):
        m = old_name.fullmatch(path.name)
        if m is None or not path.is_dir() or path.is_symlink() or process_runs(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):  # a failure is left for the next write
            restore_swapped_out(path, out)
            touched.append(path)
    return touched
