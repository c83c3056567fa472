"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

Layout of one checkpoint directory ``RUN/checkpoints/step_00001000/``::

    weights.safetensors   G.*, D.*, G_ema.* state_dict tensors
    train.safetensors     optimizer tensors (opt_g.*, opt_d.*) and RNG states (rng.*)
    state.json            step counters, optimizer hyper-parameters, data position, Python/NumPy RNG
    manifest.json         SHA-256 of each file above; written last

A checkpoint is written into a temporary sibling directory, every file and the
directory are fsynced, and the directory is renamed into place: a crash at any
moment leaves either the old set of checkpoints or the new one, never a torn
one. Loading verifies the manifest, so a checkpoint without one (or with a
mismatching hash) is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ganforge.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d{8})$")
_FILES = ("weights.safetensors", "train.safetensors", "state.json")


@dataclass
class Checkpoint:
    """What a checkpoint holds once loaded (tensors on CPU)."""

    path: Path
    step: int
    weights: dict[str, dict[str, torch.Tensor]]  # {"G": state_dict, "D": ..., "G_ema": ...}
    train_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)


def _tensors_for_saving(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage; contiguous clones are independent.
    return {f"{prefix}{k}": v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def optimizer_to_flat(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON metadata."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{name}.{idx}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(name: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of :func:`optimizer_to_flat`: a state_dict for ``Optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, sub = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[sub] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(ckpt_root: Path, step: int, modules: dict[str, nn.Module],
                    train_tensors: dict[str, torch.Tensor], state: dict, keep_last: int = 3) -> Path:
    """Atomically write a checkpoint for ``step`` and prune all but the newest ``keep_last``.

    Args:
        ckpt_root: ``RUN/checkpoints``.
        modules: {"G": ..., "D": ..., "G_ema": ...} unwrapped modules (no DDP/compile prefixes).
        train_tensors: optimizer and RNG tensors, names already prefixed.
        state: JSON-able counters and metadata.
    Returns: the checkpoint directory.
    """
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    weights: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        sd = module.state_dict()
        for k, v in sd.items():
            if torch.is_floating_point(v) and not torch.isfinite(v).all():
                raise CheckpointError(ckpt_root, f"refusing to save: {name}.{k} holds non-finite values")
        weights.update(_tensors_for_saving(sd, f"{name}."))
    final = ckpt_root / step_dir_name(step)
    tmp = ckpt_root / f".tmp-{step_dir_name(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_file(weights, str(tmp / "weights.safetensors"), metadata={"format": str(FORMAT_VERSION)})
        save_file(train_tensors, str(tmp / "train.safetensors"), metadata={"format": str(FORMAT_VERSION)})
        full_state = {"format": FORMAT_VERSION, "step": step, **state}
        (tmp / "state.json").write_text(json.dumps(full_state, indent=1), encoding="utf-8")
        for fname in _FILES:
            _fsync_file(tmp / fname)
        manifest = {"format": FORMAT_VERSION, "step": step,
                    "sha256": {fname: _sha256(tmp / fname) for fname in _FILES}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _fsync_file(tmp / "manifest.json")
        _fsync_dir(tmp)
        replace_dir(tmp, final)  # re-saving a step (e.g. after a rollback) swaps directories
        _fsync_dir(ckpt_root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(final, f"could not write checkpoint ({exc.strerror or exc}); "
                              "the previous checkpoints are intact") from None
    prune_checkpoints(ckpt_root, keep_last)
    return final


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the complete directory ``tmp`` to ``final`` by rename; an existing ``final`` is swapped out first."""
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint directories (by name), newest first. Temporary ones are ignored."""
    ckpt_root = Path(ckpt_root)
    if not ckpt_root.is_dir():
        return []
    found = []
    for p in ckpt_root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def clean_stale(ckpt_root: Path) -> int:
    """Remove temporary directories left by an interrupted save. Returns how many."""
    ckpt_root = Path(ckpt_root)
    if not ckpt_root.is_dir():
        return 0
    removed = 0
    for p in ckpt_root.iterdir():
        if p.name.startswith((".tmp-", ".old-")):
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


def prune_checkpoints(ckpt_root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (the ``best`` one is kept apart)."""
    for _, path in list_checkpoints(ckpt_root)[keep_last:]:
        shutil.rmtree(path, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict:
    """Check the manifest's hashes; return the manifest or raise CheckpointError."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(path, "no manifest.json: incomplete or not a ganforge checkpoint")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        hashes = manifest["sha256"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointError(manifest_path, "manifest is not valid JSON with a sha256 table") from None
    for fname in _FILES:
        fpath = path / fname
        if not fpath.is_file():
            raise CheckpointError(fpath, "missing file listed in the manifest")
        if _sha256(fpath) != hashes.get(fname):
            raise CheckpointError(fpath, "SHA-256 does not match the manifest (corrupt or modified)")
    return manifest


def load_checkpoint(path: Path) -> Checkpoint:
    """Load and verify one checkpoint directory. Never unpickles."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(path, "checkpoint directory not found")
    verify_checkpoint(path)
    try:
        flat = load_file(str(path / "weights.safetensors"))
        train_tensors = load_file(str(path / "train.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"unreadable safetensors file: {exc}") from None
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(path / "state.json", "not valid JSON") from None
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(path, f"checkpoint format {state.get('format')!r} is not {FORMAT_VERSION}")
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        module, _, name = key.partition(".")
        weights.setdefault(module, {})[name] = value
    return Checkpoint(path=path, step=int(state["step"]), weights=weights,
                      train_tensors=train_tensors, state=state)


def find_latest(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint of a run that verifies; falls back past corrupt ones with a warning."""
    ckpt_root = Path(run_dir) / "checkpoints"
    for _, path in list_checkpoints(ckpt_root):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            log.warning("skipping checkpoint %s", exc)
    return None


def load_module_state(module: nn.Module, state: dict[str, torch.Tensor], where: str | Path) -> None:
    """``load_state_dict(strict=True)`` with names, shapes and finiteness checked -> CheckpointError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(where, f"does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(where, f"{k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
        if v.dtype != own[k].dtype:
            raise CheckpointError(where, f"{k} has dtype {v.dtype}, the model expects {own[k].dtype}")
        if torch.is_floating_point(v) and not torch.isfinite(v).all():
            raise CheckpointError(where, f"{k} holds non-finite values")
    module.load_state_dict(state, strict=True)
