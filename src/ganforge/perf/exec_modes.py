"""Execution modes: which ``train.*`` switches each mode sets, the defaults per machine, and what actually ran.

A mode is a dict of ``train.*`` settings applied on top of a preset. Keys the
config does not know are set as attributes, which the trainer reads with
defaults. Every mode but ``preset`` states the memory layout and compilation
itself, so that ``reference`` is the plain loop whatever the preset sets (the
ResNet presets ship with channels_last).
"""

from __future__ import annotations

REFERENCE = "reference"
_PLAIN = {"channels_last": False, "compile": False}
MODES = {
    REFERENCE: {**_PLAIN, "fast": False, "precision": "fp32"},
    "bf16": {**_PLAIN, "fast": False, "precision": "bf16"},
    "fp16": {**_PLAIN, "fast": False, "precision": "fp16"},
    "channels_last": {**_PLAIN, "fast": False, "precision": "fp32", "channels_last": True},
    "fused": {**_PLAIN, "fast": True, "precision": "fp32", "reuse_fake": False, "batch_d": False,
              "cuda_graphs": False, "cudnn_benchmark": False},
    "fused+reuse": {**_PLAIN, "fast": True, "precision": "fp32", "reuse_fake": True, "batch_d": False,
                    "cuda_graphs": False, "cudnn_benchmark": False},
    "fused+reuse+batch_d": {**_PLAIN, "fast": True, "precision": "fp32", "cuda_graphs": False,
                            "cudnn_benchmark": False},
    "fast-fp32": {**_PLAIN, "fast": True, "precision": "fp32"},
    "fast-no-graphs": {**_PLAIN, "fast": True, "cuda_graphs": False},
    "fast": {**_PLAIN, "fast": True},
    "fast+cl": {**_PLAIN, "fast": True, "channels_last": True},
    "fast+compile": {**_PLAIN, "fast": True, "compile": True},
    "fast-fp16": {**_PLAIN, "fast": True, "precision": "fp16"},
    "preset": {},  # the preset's own train.* settings: what `ganforge train` runs on this machine
}

# Defaults on hardware with native bf16 (AVX-512 BF16 / AMX CPUs, Ampere and later GPUs).
DEFAULT_MODES = {
    "cpu": (REFERENCE, "bf16", "channels_last", "fused", "fused+reuse", "fused+reuse+batch_d", "fast", "fast+cl"),
    "cuda": (REFERENCE, "bf16", "fused+reuse+batch_d", "fast-fp32", "fast-no-graphs", "fast", "fast+cl", "fast-fp16"),
}
# Without native bf16, emulated bf16 runs orders of magnitude below fp32 (minutes per mode on a
# small CPU) and `precision: auto` resolves to fp32, so the bf16 mode is left out, and so is the
# fp32 twin of "fast" ("fused+reuse+batch_d" on CPU, "fast-fp32" on CUDA), which would repeat it.
DEFAULT_MODES_NO_BF16 = {
    "cpu": (REFERENCE, "channels_last", "fused", "fused+reuse", "fast", "fast+cl"),
    "cuda": (REFERENCE, "fused+reuse+batch_d", "fast-no-graphs", "fast", "fast+cl", "fast-fp16"),
}


def default_modes(kind: str, bf16_native: bool) -> tuple[str, ...]:
    """The modes run when ``--modes`` is not given, for device kind ``cpu``/``cuda``."""
    return (DEFAULT_MODES if bf16_native else DEFAULT_MODES_NO_BF16)[kind]


def requested_precision(mode: str) -> str | None:
    """The precision a mode asks for explicitly; None when the trainer's ``auto`` decides."""
    return MODES[mode].get("precision")


def describe(trainer) -> dict:
    """What actually ran: the trainer's resolved execution plan (the ``settings`` field of each JSON row)."""
    plan = trainer.plan
    return {
        "precision": plan.precision,
        "channels_last": plan.channels_last,
        "compile": plan.compile_g or plan.compile_d,
        "fused_adam": plan.fused_optim,
        "reuse_fake": plan.reuse_fake,
        "batch_d": plan.batch_d,
        "cuda_graphs": plan.cuda_graphs,
        "sync_per_update": not plan.skip_on_device,
        "plan": plan.as_dict(),
    }
