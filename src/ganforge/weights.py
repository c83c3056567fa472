"""Loading weights that come from elsewhere, safely.

User-supplied weights are read from safetensors files only: a safetensors
file is a JSON header plus raw bytes and cannot execute code. Pickle-based
files (``.pt``, ``.pth``, ``.pkl``, ``.ckpt``, ``.bin``) can run arbitrary code when
unpickled, so they are refused unless the caller passes ``unsafe_pickle=True``;
even then they go through ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers (torch >= 2.6 closes the known bypass,
CVE-2025-32434; see pyproject.toml). Every tensor's name, shape, dtype and
finiteness is checked against the model before it is loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ganforge.checkpoint import load_module_state
from ganforge.errors import CheckpointError

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def read_state_file(path: str | Path, unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a safetensors file (or, only if allowed, a weights-only pickle)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "weights file not found")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not unsafe_pickle:
            raise CheckpointError(path, "pickle-based weights can execute code when loaded and are refused; "
                                  "convert them to .safetensors, or (Python API only) pass unsafe_pickle=True "
                                  "to read tensors only with torch's weights-only loader")
        return _read_weights_only_pickle(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"not a valid safetensors file ({str(exc).splitlines()[0][:120]})") from None


def _read_weights_only_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError,
            ModuleNotFoundError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"refused by the weights-only loader: {first}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise CheckpointError(path, "expected a flat mapping of parameter names to tensors")
    return obj


def load_weights(module: nn.Module, path: str | Path, unsafe_pickle: bool = False, prefix: str = "") -> nn.Module:
    """Load checked weights into ``module``; ``prefix`` selects e.g. ``"G."`` entries of a larger file."""
    state = read_state_file(path, unsafe_pickle)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    load_module_state(module, state, path)
    return module
