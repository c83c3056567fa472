"""Validation of everything a checkpoint reads from disk, before anything uses it.

``manifest.json``, ``state.json`` and the names, dtypes and shapes of the tensors in
``train.safetensors`` are checked field by field: counters are non-negative integers
that agree with each other and with the directory name, optimizer metadata has the
shape ``torch.optim`` expects, RNG states are exactly what ``random.setstate``,
``numpy.random.set_state`` and ``torch.set_rng_state`` accept. Any defect raises
:class:`CheckpointError` naming the file and the field, so a loader falls back to an
older checkpoint instead of crashing halfway through restoring a run.

JSON booleans are not integers here (``True`` is an ``int`` in Python), and NaN and
infinities are refused when the JSON is parsed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from ganforge.errors import CheckpointError

FORMAT_VERSION = 1
FILES = ("weights.safetensors", "train.safetensors", "state.json")
# A manifest is a few hundred bytes, a state a few tens of KB; refuse to parse anything huge.
MAX_JSON_BYTES = {"manifest.json": 1 << 20, "state.json": 64 << 20}

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OPT_TENSOR = re.compile(r"^(opt_[gd])\.(\d+)\.([A-Za-z_][A-Za-z0-9_]*)$")
_RNG_TENSOR = re.compile(r"^rng\.(torch|task|cuda\.\d+|rank[1-9]\d*\.(?:torch|task|cuda))$")
_MT_WORDS = 624  # Mersenne Twister state words, in Python's random and NumPy alike
_CUDA_RNG_BYTES = 16  # a CUDA (Philox) generator's state: seed and offset, 8 bytes each
_CPU_RNG_BYTES = int(torch.get_rng_state().numel())  # the CPU Mersenne Twister's serialised state
# torch's global generator is on the CPU; the task generator lives on the training device.
_RNG_BYTES = {"torch": {_CPU_RNG_BYTES}, "task": {_CPU_RNG_BYTES, _CUDA_RNG_BYTES}, "cuda": {_CUDA_RNG_BYTES}}
_INT_MAX = 2**63 - 1  # counters fit int64; seed + epoch stays a valid torch seed
OPTIMIZERS = ("opt_g", "opt_d")


class _Invalid(Exception):
    """A field that fails validation; turned into CheckpointError with the file's path."""


def read_json(path: Path) -> Any:
    """Parse a checkpoint JSON file; a missing, huge, non-UTF-8, non-JSON or NaN-bearing file -> CheckpointError."""
    limit = MAX_JSON_BYTES.get(path.name, 1 << 20)
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise CheckpointError(path, f"larger than {limit} bytes: not a ganforge checkpoint file")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
        raise CheckpointError(path, reason) from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed")


# ------------------------------------------------------------------ primitives


def _int(value: Any, field: str, low: int = 0, high: int = _INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{field} must be an integer, got {_show(value)}")
    if not low <= value <= high:
        raise _Invalid(f"{field} must be in [{low}, {high}], got {_show(value)}")
    return value


def _number(value: Any, field: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{field} must be a number, got {_show(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise _Invalid(f"{field} is out of range") from None
    if not math.isfinite(value) or value < low:
        raise _Invalid(f"{field} must be a finite number >= {low:g}, got {value!r}")
    return value


def _dict(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise _Invalid(f"{field} must be an object, got {_show(value)}")
    return value


def _list(value: Any, field: str, length: int | None = None) -> list:
    if not isinstance(value, list):
        raise _Invalid(f"{field} must be a list, got {_show(value)}")
    if length is not None and len(value) != length:
        raise _Invalid(f"{field} must have {length} entries, got {len(value)}")
    return value


def _scalar(value: Any, field: str) -> None:
    """A JSON leaf that code may safely pass around: None, bool, string or finite number."""
    if value is None or isinstance(value, (bool, str)):
        return
    _number(value, field, low=-math.inf)


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


# ----------------------------------------------------------------- manifest


def validate_manifest(manifest: Any, path: Path, dir_step: int | None) -> dict:
    """Check ``manifest.json``'s content; returns it. ``dir_step``: the step in the directory name, if any."""
    try:
        _dict(manifest, "manifest")
        if manifest.get("format") != FORMAT_VERSION:
            raise _Invalid(f"format {_show(manifest.get('format'))} is not {FORMAT_VERSION}")
        step = _int(manifest.get("step"), "step")
        if dir_step is not None and step != dir_step:
            raise _Invalid(f"step {step} disagrees with the directory name (step {dir_step})")
        hashes = _dict(manifest.get("sha256"), "sha256")
        for fname in FILES:
            digest = hashes.get(fname)
            if not isinstance(digest, str) or not _HEX64.match(digest):
                raise _Invalid(f"sha256 of {fname} must be 64 lowercase hex digits, got {_show(digest)}")
    except _Invalid as exc:
        raise CheckpointError(path, f"invalid manifest: {exc}") from None
    return manifest


# -------------------------------------------------------------------- state


def validate_state(state: Any, path: Path, step: int) -> dict:
    """Check ``state.json``; return it with defaults filled in for optional counters.

    The result holds: ``format``, ``step`` (== ``step``), ``world_size`` >= 1,
    ``images_seen``/``skipped_steps``/``rollbacks`` >= 0, ``train_seconds`` finite >= 0,
    ``batcher`` {epoch, index, seed}, ``task`` (object; ``d_steps`` >= 0 if present),
    ``optim`` {opt_g, opt_d: {param_groups, scalars}}, ``precision`` (GradScaler state or
    empty), ``rng_python`` and ``rng_numpy`` in the shapes the trainer writes.
    """
    try:
        _dict(state, "state")
        if state.get("format") != FORMAT_VERSION:
            raise _Invalid(f"format {_show(state.get('format'))} is not {FORMAT_VERSION}")
        if _int(state.get("step"), "step") != step:
            raise _Invalid(f"step {state['step']} disagrees with the manifest and directory (step {step})")
        out = dict(state)
        out["world_size"] = _int(state.get("world_size", 1), "world_size", low=1)
        out["images_seen"] = _int(state.get("images_seen"), "images_seen")
        for key in ("skipped_steps", "rollbacks"):
            out[key] = _int(state.get(key, 0), key)
        out["train_seconds"] = _number(state.get("train_seconds", 0.0), "train_seconds")
        batcher = _dict(state.get("batcher"), "batcher")
        # The data position is images into the current epoch: every one of them, and at least one
        # image per finished epoch, was shown to D and counted in images_seen.
        epoch = _int(batcher.get("epoch"), "batcher.epoch", high=2**62)
        index = _int(batcher.get("index"), "batcher.index")
        if index > out["images_seen"] or epoch > out["images_seen"]:
            raise _Invalid(f"data position (batcher epoch {epoch}, index {index}) is past the "
                           f"{out['images_seen']} images seen")
        _int(batcher.get("seed"), "batcher.seed", low=-(2**62), high=2**62)
        task = _dict(state.get("task", {}), "task")
        for key, value in task.items():
            _scalar(value, f"task.{key}")
        if "d_steps" in task:
            _int(task["d_steps"], "task.d_steps")
        out["task"] = task
        optim = _dict(state.get("optim"), "optim")
        for name in OPTIMIZERS:
            _validate_optimizer(optim.get(name), f"optim.{name}")
        out["precision"] = _validate_precision(state.get("precision", {}))
        _validate_python_rng(state.get("rng_python"))
        _validate_numpy_rng(state.get("rng_numpy"))
    except _Invalid as exc:
        raise CheckpointError(path, f"invalid training state: {exc}") from None
    return out


def _validate_optimizer(meta: Any, field: str) -> None:
    meta = _dict(meta, field)
    groups = _list(meta.get("param_groups"), f"{field}.param_groups")
    if not groups:
        raise _Invalid(f"{field}.param_groups is empty")
    indices: list[int] = []
    for g, group in enumerate(groups):
        where = f"{field}.param_groups[{g}]"
        group = _dict(group, where)
        for i, idx in enumerate(_list(group.get("params"), f"{where}.params")):
            indices.append(_int(idx, f"{where}.params[{i}]"))
        _number(group.get("lr"), f"{where}.lr")
        for key, value in group.items():
            if key == "params":
                continue
            if key == "betas":
                for b, beta in enumerate(_list(value, f"{where}.betas", 2)):
                    if not 0.0 <= _number(beta, f"{where}.betas[{b}]") < 1.0:
                        raise _Invalid(f"{where}.betas[{b}] must be in [0, 1), got {beta}")
            elif key in ("lr", "eps", "weight_decay", "initial_lr"):
                _number(value, f"{where}.{key}")
            else:
                _scalar(value, f"{where}.{key}")
    # torch numbers an optimizer's parameters 0..n-1 across its groups
    if sorted(indices) != list(range(len(indices))):
        raise _Invalid(f"{field} parameter indices are not 0..{len(indices) - 1} each once")
    scalars = _dict(meta.get("scalars", {}), f"{field}.scalars")
    for idx, entry in scalars.items():
        if not (isinstance(idx, str) and idx.isdigit() and int(idx) < len(indices)):
            raise _Invalid(f"{field}.scalars has an entry for unknown parameter {_show(idx)}")
        for key, value in _dict(entry, f"{field}.scalars.{idx}").items():
            _scalar(value, f"{field}.scalars.{idx}.{key}")


def _validate_precision(state: Any) -> dict:
    """Empty (no loss scaling) or a ``torch.amp.GradScaler`` state."""
    state = _dict(state, "precision")
    if not state:
        return state
    _number(state.get("scale"), "precision.scale")
    if state["scale"] <= 0:
        raise _Invalid(f"precision.scale must be positive, got {state['scale']}")
    if _number(state.get("growth_factor"), "precision.growth_factor") <= 1.0:
        raise _Invalid("precision.growth_factor must be > 1")
    if not 0.0 < _number(state.get("backoff_factor"), "precision.backoff_factor") < 1.0:
        raise _Invalid("precision.backoff_factor must be in (0, 1)")
    _int(state.get("growth_interval"), "precision.growth_interval", low=1)
    _int(state.get("_growth_tracker"), "precision._growth_tracker")
    return state


def _validate_python_rng(value: Any) -> None:
    """``random.getstate()`` as the trainer stores it: tuples as ``{"__tuple__": [...]}``."""
    outer = _list(_dict(value, "rng_python").get("__tuple__"), "rng_python", 3)
    _int(outer[0], "rng_python version", low=3, high=3)
    words = _list(_dict(outer[1], "rng_python state").get("__tuple__"), "rng_python state", _MT_WORDS + 1)
    for i, w in enumerate(words[:-1]):
        _int(w, f"rng_python state[{i}]", high=2**32 - 1)
    _int(words[-1], "rng_python position", high=_MT_WORDS)
    if outer[2] is not None:
        _number(outer[2], "rng_python gauss_next", low=-math.inf)


def _validate_numpy_rng(value: Any) -> None:
    """``numpy.random.get_state()`` as a list: name, 624 words, position, has_gauss, cached_gaussian."""
    value = _list(value, "rng_numpy", 5)
    if value[0] != "MT19937":
        raise _Invalid(f"rng_numpy generator must be MT19937, got {_show(value[0])}")
    for i, w in enumerate(_list(value[1], "rng_numpy state", _MT_WORDS)):
        _int(w, f"rng_numpy state[{i}]", high=2**32 - 1)
    _int(value[2], "rng_numpy position", high=_MT_WORDS)
    _int(value[3], "rng_numpy has_gauss", high=1)
    _number(value[4], "rng_numpy cached_gaussian", low=-math.inf)


# ---------------------------------------------------------- train tensors


def validate_train_tensors(tensors: dict[str, torch.Tensor], state: dict, path: Path) -> None:
    """Names, dtypes and shapes of the optimizer and RNG tensors, against the validated state."""
    sizes = {name: sum(len(g["params"]) for g in state["optim"][name]["param_groups"]) for name in OPTIMIZERS}
    for required in ("rng.torch", "rng.task"):
        if required not in tensors:
            raise CheckpointError(path, f"has no {required} tensor")
    for key, value in tensors.items():
        m = _OPT_TENSOR.match(key)
        if m:
            if int(m.group(2)) >= sizes[m.group(1)]:
                raise CheckpointError(path, f"{key}: {m.group(1)} has only {sizes[m.group(1)]} parameters")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise CheckpointError(path, f"{key} holds non-finite values")
            continue
        if key.startswith(("opt_g.", "opt_d.")):
            raise CheckpointError(path, f"{key}: not an optimizer tensor name (opt_X.INDEX.NAME)")
        m = _RNG_TENSOR.match(key)
        if m:
            kind = m.group(1).rpartition(".")[2]  # torch, task, cuda; "cuda.0" -> "0"
            allowed = _RNG_BYTES.get(kind, {_CUDA_RNG_BYTES})
            if value.dtype != torch.uint8 or value.ndim != 1 or value.numel() not in allowed:
                raise CheckpointError(path, f"{key}: a random state must be uint8 of length "
                                      f"{' or '.join(map(str, sorted(allowed)))}, got {value.dtype} "
                                      f"{tuple(value.shape)}")
            continue
        if key.startswith("rng."):
            raise CheckpointError(path, f"{key}: unknown random stream")
