"""Execution precision: float32, or autocast to bfloat16 / float16 with losses kept in float32.

Which mode a run uses is decided by the execution plan (:mod:`ganforge.train.plan`;
``train.precision: auto`` picks bf16 where the hardware computes it natively);
this module has the hardware checks and :class:`Precision`, which applies a mode.
Under autocast the matrix products and convolutions run in the low precision
while the losses, logits summaries and the gradient-penalty / R1 norms are
computed in float32 (see :mod:`ganforge.losses`); parameters, gradients and
optimizer state stay float32.
"""

from __future__ import annotations

import contextlib

import torch


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul (AVX-512 BF16 or AMX), where bf16 autocast pays off.

    Decided from the CPU's flags (:func:`ganforge.cpu_features.cpu_has_native_bf16`), not from
    oneDNN, which says yes for any AVX-512 CPU.
    """
    from ganforge.cpu_features import cpu_has_native_bf16

    try:
        return bool(torch.backends.mkldnn.is_available()) and cpu_has_native_bf16()
    except (AttributeError, RuntimeError):
        return False


def cuda_supports_bf16(device: torch.device) -> bool:
    """True for CUDA devices with bf16 tensor cores (compute capability 8.0 and later)."""
    try:
        return torch.cuda.get_device_capability(device)[0] >= 8
    except (AssertionError, RuntimeError):
        return False


class Precision:
    """Autocast context and gradient scaler for one precision mode."""

    def __init__(self, mode: str, device: torch.device):
        self.mode, self.device = mode, device
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        # fp16 gradients underflow without loss scaling; bf16 has float32's exponent range.
        self.scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None

    def autocast(self, cache: bool = True):
        """The autocast region for forward passes (a no-op for fp32).

        ``cache=False`` is required inside CUDA-graph capture: autocast's cache of
        cast weights would otherwise outlive the captured region.
        """
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=cache)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(opt)
        else:
            opt.step()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
