"""Choosing the torch device: one place for ``train.device``, every command's ``--device`` and the bench.

A user's device string becomes a :class:`torch.device`, so that ``cuda`` on a
machine (or a PyTorch build) without CUDA is a :class:`ConfigError` naming the
option instead of an assertion deep inside torch.
"""

from __future__ import annotations

import torch

from ganforge.errors import ConfigError, quote


def resolve_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; otherwise the named device, checked.

    Raises:
        ConfigError: ``option``: not a device name, CUDA requested but unavailable
            (no GPU, or a CPU-only PyTorch build), or a GPU index that does not exist.
    """
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError, ValueError):
            raise ConfigError(option, f"not a device: {quote(name)} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this PyTorch build has no CUDA support" if torch.version.cuda is None \
                else "no CUDA device is available"
            raise ConfigError(option, f"{device} was requested but {build}; use cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(option, f"{device} does not exist: this machine has {count} CUDA device(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(option, f"{device} was requested but MPS is not available; use cpu")
    elif device.type != "cpu":
        raise ConfigError(option, f"unsupported device type {device.type!r} (use cpu, cuda, cuda:N or auto)")
    return device
