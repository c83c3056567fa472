"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

Layout of one checkpoint directory ``RUN/checkpoints/step_00001000/``::

    weights.safetensors   G.*, D.*, G_ema.* state_dict tensors
    train.safetensors     optimizer tensors (opt_g.*, opt_d.*) and RNG states (rng.*)
    state.json            step counters, optimizer hyper-parameters, data position, Python/NumPy RNG
    manifest.json         SHA-256 of each file above; written last

A checkpoint is written into a temporary sibling directory, every file and the
directory are fsynced, and the directory is renamed into place: a crash at any
moment leaves either the old set of checkpoints or the new one, never a torn
one. A write that fails (a full disk: ``OSError`` or ``SafetensorError``) removes
the temporary directory and raises one :class:`CheckpointError`.

Loading verifies the manifest, so a checkpoint without one (or with a mismatching
hash) is never trusted, and validates every field read from disk
(:mod:`ganforge.checkpoint_schema`): a loaded :class:`Checkpoint` can be restored
without further checks, and any defect is a ``CheckpointError`` naming the file,
which :func:`find_latest` answers by falling back to the next older checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ganforge.atomic import SWAPPED_OUT, fsync_dir, process_runs, replace_dir, restore_swapped_out
from ganforge.data.checksums import file_digests
from ganforge.checkpoint_schema import FILES as _FILES
from ganforge.checkpoint_schema import (
    FORMAT_VERSION,
    read_json,
    validate_manifest,
    validate_state,
    validate_train_tensors,
)
from ganforge.errors import CheckpointError

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d{8})$")
_REJECTED_PREFIX = "rejected-"


@dataclass
class Checkpoint:
    """What a checkpoint holds once loaded (tensors on CPU), every field validated.

    ``state`` is ``state.json`` as described by :func:`ganforge.checkpoint_schema.validate_state`
    (optional counters filled in); ``train_tensors`` hold ``opt_g.*``/``opt_d.*`` optimizer
    tensors whose indices exist in ``state["optim"]`` and ``rng.*`` states of the right size.
    """

    path: Path
    step: int
    weights: dict[str, dict[str, torch.Tensor]]  # {"G": state_dict, "D": ..., "G_ema": ...}
    train_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    return file_digests(path, ["sha256"])["sha256"]


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


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
    # Hyper-parameters held as tensors (a CUDA-graphed run's learning rates) are saved as numbers.
    groups = [{k: float(v) if torch.is_tensor(v) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


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
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(ckpt_root, f"cannot create the checkpoint directory ({_io_reason(exc)})") from None
    weights: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        sd = module.state_dict()
        for k, v in sd.items():
            if torch.is_floating_point(v) and not torch.isfinite(v).all():
                raise CheckpointError(ckpt_root, f"refusing to save: {name}.{k} holds non-finite values")
        weights.update(_tensors_for_saving(sd, f"{name}."))
    for k, v in train_tensors.items():  # the loader refuses these too: never write what cannot be resumed
        if torch.is_floating_point(v) and not torch.isfinite(v).all():
            raise CheckpointError(ckpt_root, f"refusing to save: {k} holds non-finite values")
    try:  # NaN or infinity would make state.json unloadable (the loader refuses them)
        state_json = json.dumps({"format": FORMAT_VERSION, "step": step, **state}, indent=1, allow_nan=False)
    except ValueError as exc:
        raise CheckpointError(ckpt_root, f"refusing to save: the training state holds {exc}") from None
    final = ckpt_root / step_dir_name(step)
    tmp = ckpt_root / f".tmp-{step_dir_name(step)}-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write_files(tmp, step, weights, train_tensors, state_json)
        replace_dir(tmp, final)  # re-saving a step (e.g. after a rollback) swaps directories
        fsync_dir(ckpt_root)
    except BaseException as exc:
        # Whatever stopped the write (a full disk, a quota, an I/O error, Ctrl-C), remove
        # the partial directory: the previous checkpoints were never touched.
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, SafetensorError)):
            raise CheckpointError(final, f"could not write checkpoint ({_io_reason(exc)}); "
                                  "the previous checkpoints are intact") from None
        raise
    prune_checkpoints(ckpt_root, keep_last)
    return final


def _write_files(tmp: Path, step: int, weights: dict[str, torch.Tensor], train_tensors: dict[str, torch.Tensor],
                 state: str) -> None:
    """Write and fsync every file of a checkpoint into ``tmp``; the manifest last."""
    for fname, tensors in (("weights.safetensors", weights), ("train.safetensors", train_tensors)):
        save_file(tensors, str(tmp / fname), metadata={"format": str(FORMAT_VERSION)})
        check_complete(tmp / fname)
    _write_text(tmp / "state.json", state)
    for fname in _FILES:
        _fsync_file(tmp / fname)
    manifest = {"format": FORMAT_VERSION, "step": step,
                "sha256": {fname: sha256_file(tmp / fname) for fname in _FILES}}
    _write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))
    _fsync_file(tmp / "manifest.json")
    fsync_dir(tmp)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()  # a full disk surfaces here or in close(), both inside the caller's error handling


def check_complete(path: Path) -> None:
    """Raise OSError if a safetensors file is shorter than its header says.

    A buffered writer can lose its last block silently when the disk fills up at
    the final flush; the manifest would then vouch for a truncated file.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n)) if n <= size - 8 else None
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise OSError(f"{path.name} was not written completely") from None
    if size != 8 + n + end:
        raise OSError(f"{path.name} was not written completely ({size} of {8 + n + end} bytes)")


def _io_reason(exc: BaseException) -> str:
    """One line for an OSError or a SafetensorError (whose text wraps the OS error)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__


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


_LEFTOVER = re.compile(rf"(\.tmp-|{re.escape(SWAPPED_OUT)})(.+)-(\d+)")  # .tmp-step_X-PID, .old-step_X-PID


def clean_stale(ckpt_root: Path) -> int:
    """Tidy what interrupted saves left in ``ckpt_root``; return how many entries were removed or restored.

    Only dead writers' leftovers are touched. A checkpoint swapped out by a writer killed between
    :func:`replace_dir`'s renames is renamed back if nothing took its place (no saved step is lost).
    """
    ckpt_root = Path(ckpt_root)
    if not ckpt_root.is_dir():
        return 0
    touched = 0
    for p in sorted(ckpt_root.iterdir()):
        m = _LEFTOVER.fullmatch(p.name)
        if m is None or p.is_symlink() or process_runs(int(m.group(3))):
            continue
        try:
            if m.group(1) == SWAPPED_OUT:
                restore_swapped_out(p, ckpt_root / m.group(2))
            else:
                shutil.rmtree(p)
            touched += 1
        except OSError:  # left for the next resume; a checkpoint elsewhere is still found
            pass
    return touched


def prune_checkpoints(ckpt_root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (the ``best`` one is kept apart)."""
    for _, path in list_checkpoints(ckpt_root)[keep_last:]:
        shutil.rmtree(path, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict:
    """Check the manifest (fields, step against the directory name) and the files' hashes.

    Returns the manifest; raises CheckpointError naming the file at fault.
    """
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(path, "no manifest.json: incomplete or not a ganforge checkpoint")
    m = _STEP_DIR.match(path.name)
    manifest = validate_manifest(read_json(manifest_path), manifest_path, int(m.group(1)) if m else None)
    for fname in _FILES:
        fpath = path / fname
        if not fpath.is_file():
            raise CheckpointError(fpath, "missing file listed in the manifest")
        try:
            digest = sha256_file(fpath)
        except OSError as exc:
            raise CheckpointError(fpath, f"cannot read ({_io_reason(exc)})") from None
        if digest != manifest["sha256"][fname]:
            raise CheckpointError(fpath, "SHA-256 does not match the manifest (corrupt or modified)")
    return manifest


def load_checkpoint(path: Path) -> Checkpoint:
    """Load one checkpoint directory, verifying the manifest and validating every field. Never unpickles.

    Raises CheckpointError (and nothing else) for anything missing, corrupt or malformed.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(path, "checkpoint directory not found")
    manifest = verify_checkpoint(path)
    state = validate_state(read_json(path / "state.json"), path / "state.json", manifest["step"])
    tensors = {}
    for fname in ("weights.safetensors", "train.safetensors"):
        try:
            tensors[fname] = load_file(str(path / fname))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(path / fname, f"unreadable safetensors file: {_io_reason(exc)}") from None
    validate_train_tensors(tensors["train.safetensors"], state, path / "train.safetensors")
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors["weights.safetensors"].items():
        module, _, name = key.partition(".")
        if not name:
            raise CheckpointError(path / "weights.safetensors", f"tensor {key!r} is not named MODULE.NAME")
        weights.setdefault(module, {})[name] = value
    for required in ("G", "D"):
        if required not in weights:
            raise CheckpointError(path / "weights.safetensors", f"has no weights for {required}")
    return Checkpoint(path=path, step=manifest["step"], weights=weights,
                      train_tensors=tensors["train.safetensors"], state=state)


def find_latest(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint of a run that verifies; falls back past invalid ones with a warning."""
    ckpt_root = Path(run_dir) / "checkpoints"
    for _, path in list_checkpoints(ckpt_root):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            log.warning("skipping checkpoint %s", exc)
    return None


def has_valid_checkpoint(run_dir: Path) -> bool:
    """Whether any checkpoint of the run verifies and validates (what resuming needs)."""
    return find_latest(run_dir) is not None


def set_aside_invalid(ckpt_root: Path) -> list[Path]:
    """Prepare a run with no valid checkpoint to start again from step 0.

    Removes temporaries of interrupted saves and renames every ``step_*`` directory
    (none of which loads) to ``rejected-step_*``: kept for inspection, but never
    loaded, pruned or mistaken for the newest checkpoint of the restarted run.
    Returns the renamed directories.
    """
    ckpt_root = Path(ckpt_root)
    clean_stale(ckpt_root)
    moved = []
    for _, path in list_checkpoints(ckpt_root):
        target = path.with_name(_REJECTED_PREFIX + path.name)
        shutil.rmtree(target, ignore_errors=True)  # from an earlier restart
        os.replace(path, target)
        moved.append(target)
    return moved


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
