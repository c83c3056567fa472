"""The execution plan: how a run's arithmetic is executed, decided once, with reasons.

Every speed switch of training is resolved here, before the training step is
built, from the config (``train.*``), the device, the process count, the task's
capabilities (:class:`~ganforge.tasks.base.TaskCapabilities`) and the
regularisers (:class:`~ganforge.regularizers.DRegularization`). The step, the
CUDA-graph wrapper and the benchmark harness only read the resulting frozen
:class:`ExecutionPlan`; nothing downstream decides again. The plan is printed
at the start of a run and written to ``RUN/execution.json``.

``train.fast: false`` is the reference path, the plain loop of the papers: the
plan with every switch off (float32 under ``precision: auto``, Adam's loop
implementation with a host-side finiteness check per update, fresh fakes for the
G phase, separate D passes, no graphs). ``train.channels_last`` and
``train.compile`` are explicit requests and apply on either path.

Adding an execution switch: a field here with its rule in :func:`resolve_plan`
(and, for a process-wide backend flag, a line in :meth:`ExecutionPlan.apply_backend_flags`;
for an execution-only key, an entry in :data:`EXECUTION_KEYS`), and its ``train.*``
key in :mod:`ganforge.config_schema`. Switches that act inside the step are read there
as ``plan.<field>``.

The CPU thread count (``train.threads``, ``--threads``; :mod:`ganforge.threads`) is
decided here too and recorded beside the switches with its reason, but it is not a
switch: it changes how fast, never what is computed, and the reference path uses it alike.
So is the allocator setting of CPU runs (:mod:`ganforge.allocator`: glibc keeps freed
memory for the next step instead of returning it to the system).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch

from ganforge import allocator
from ganforge.config import RunConfig
from ganforge.errors import ConfigError
from ganforge.regularizers import DRegularization
from ganforge.tasks.base import TaskCapabilities
from ganforge.threads import ThreadChoice, choose_threads
from ganforge.train import precision as hardware  # its checks, looked up at call time (tests force them)

SWITCHES = ("precision", "channels_last", "compile_g", "compile_d", "fused_optim", "reuse_fake", "batch_d",
            "cuda_graphs", "cudnn_benchmark", "tf32")

# Config keys that only change how the same arithmetic is executed: a run may resume with
# other values (``ganforge train --resume``), e.g. on another machine.
EXECUTION_KEYS = ("train.device", "train.precision", "train.channels_last", "train.compile", "train.fused_optim",
                  "train.cuda_graphs", "train.cudnn_benchmark", "train.tf32", "train.threads")


# The reasons of precision: auto on CUDA (a failed capture turns the first into the second).
_BF16_IN_GRAPH = "bf16 tensor cores inside the CUDA graph"
_FP32_EAGER_CUDA = "eager CUDA steps are faster in fp32 than with bf16 casts"


@dataclass(frozen=True)
class ExecutionPlan:
    """Resolved execution switches of one run; ``reasons[name]`` says why each has its value."""

    device: str
    precision: str  # fp32 | bf16 | fp16 (autocast; parameters, losses and optimizer state stay float32)
    channels_last: bool  # NHWC memory layout for models and real batches
    compile_g: bool  # torch.compile G's forward
    compile_d: bool
    fused_optim: bool  # fused Adam kernels
    reuse_fake: bool  # the last D phase's G(z), kept with gradients, serves the G phase
    batch_d: bool  # D(real) and D(fake) in one forward
    cuda_graphs: bool  # the whole step captured once and replayed
    cudnn_benchmark: bool  # autotune each convolution once (fixed shapes)
    tf32: bool  # float32 matmuls and convolutions on TF32 tensor cores (Ampere and later)
    reasons: dict[str, str] = field(default_factory=dict, compare=False)
    threads: int = 0  # PyTorch's CPU threads (0: left at PyTorch's default)
    threads_reason: str = field(default="PyTorch's default", compare=False)
    keep_freed_memory: bool = False  # glibc keeps freed memory for reuse (CPU runs; :mod:`ganforge.allocator`)
    allocator_reason: str = field(default="the system allocator's defaults", compare=False)

    @property
    def skip_on_device(self) -> bool:
        """A non-finite update is skipped by fused Adam itself (its ``found_inf`` input), with no host read.

        Otherwise the finiteness flag is read on the host before each optimizer step.
        Loss scaling (fp16) reads it on the host too (the scaler's own check).
        """
        return self.fused_optim and self.precision != "fp16"

    def apply_backend_flags(self) -> ExecutionPlan:
        """Set the process-wide backend flags this plan asks for (switches that are off leave torch's defaults).

        Returns the plan as applied: itself, or, where glibc refuses the allocator settings,
        a copy with ``keep_freed_memory`` off that says so (``execution.json`` records what ran).
        """
        if self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        if self.tf32:  # matmuls; cuDNN's float32 convolutions use TF32 by default already
            torch.set_float32_matmul_precision("high")
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if self.keep_freed_memory and not allocator.keep_freed_memory():
            return replace(self, keep_freed_memory=False,
                           allocator_reason="glibc refused the thresholds (mallopt): the allocator's defaults")
        return self

    def as_dict(self) -> dict:
        """``{"device": ..., switch: {"value": ..., "reason": ...}, ...}`` for JSON and the benchmark."""
        out = {"device": self.device}
        for name in SWITCHES:
            out[name] = {"value": getattr(self, name), "reason": self.reasons.get(name, "")}
        out["threads"] = {"value": self.threads, "reason": self.threads_reason}
        out["keep_freed_memory"] = {"value": self.keep_freed_memory, "reason": self.allocator_reason}
        return out

    def summary(self) -> str:
        """One line: every switch's value (the reasons are in :meth:`describe` and ``execution.json``)."""
        parts = [f"{n}={v if isinstance(v, str) else ('on' if v else 'off')}"
                 for n in SWITCHES for v in [getattr(self, n)]]
        return (f"execution plan ({self.device}): " + " ".join(parts) + f" threads={self.threads or 'default'}"
                f" keep_freed_memory={'on' if self.keep_freed_memory else 'off'}")

    def describe(self) -> str:
        """A line per switch, with its value and reason."""
        lines = [f"execution plan ({self.device}):"]
        for name in SWITCHES:
            value = getattr(self, name)
            shown = value if isinstance(value, str) else ("on" if value else "off")
            lines.append(f"  {name:<17} {shown:<5} {self.reasons.get(name, '')}")
        lines.append(f"  {'threads':<17} {self.threads or 'default':<5} {self.threads_reason}")
        lines.append(f"  {'keep_freed_memory':<17} {'on' if self.keep_freed_memory else 'off':<5} "
                     f"{self.allocator_reason}")
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=1) + "\n", encoding="utf-8")

    def without_cuda_graphs(self, why: str) -> "ExecutionPlan":
        """The plan after a failed capture: eager steps, in fp32 where bf16 was chosen for the graph only.

        ``precision: auto`` picks bf16 on CUDA only inside a graph (eager bf16 steps
        are slower than fp32 ones there); an explicit ``train.precision`` stays.
        """
        changes, reasons = {"cuda_graphs": False}, {"cuda_graphs": why}
        if self.precision == "bf16" and self.reasons.get("precision") == _BF16_IN_GRAPH:
            changes["precision"], reasons["precision"] = "fp32", f"{_FP32_EAGER_CUDA} (capture failed)"
        return self.replace(**changes, reasons=reasons)

    def replace(self, **changes) -> "ExecutionPlan":
        """A copy with some switches changed (and ``reasons`` for them), e.g. after a failed capture."""
        reasons = dict(self.reasons)
        reasons.update(changes.pop("reasons", {}))
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "reasons"}
        values.update(changes)
        return ExecutionPlan(**values, reasons=reasons)


def reference_plan(device: torch.device) -> ExecutionPlan:
    """Every switch off: float32, the plain loop (what ``train.fast=false`` gives with default keys)."""
    off = {name: False for name in SWITCHES if name != "precision"}
    return ExecutionPlan(str(device), "fp32", **off, reasons={n: "reference" for n in SWITCHES})


def resolve_plan(cfg: RunConfig, device: torch.device, caps: TaskCapabilities, regs: DRegularization,
                 distributed: bool = False) -> ExecutionPlan:
    """Decide every switch for ``cfg`` on ``device``, and the CPU threads (see the module docstring)."""
    t = cfg.train
    fast = t.fast
    slow = "train.fast=false (reference path)"
    cuda = device.type == "cuda"
    r: dict[str, str] = {}

    def decide(name: str, checks: list[tuple[bool, str]], yes: str) -> bool:
        """On when every check passes; the reason is the first failing check's text, else ``yes``."""
        for ok, why in checks:
            if not ok:
                r[name] = why
                return False
        r[name] = yes
        return True

    fused = decide("fused_optim", [(fast, slow), (t.fused_optim, "train.fused_optim=false"),
                                   (device.type in ("cpu", "cuda"), f"no fused Adam on {device.type}")],
                   "fused Adam kernels")
    reuse = decide("reuse_fake", [(fast, slow), (t.reuse_fake, "train.reuse_fake=false")],
                   "the last D phase's fakes serve the G phase: one G forward fewer")
    batch_d = decide("batch_d", [(fast, slow), (t.batch_d, "train.batch_d=false"),
                                 (not caps.d_has_batchnorm, "D has BatchNorm: one pass would mix real and fake "
                                  "statistics")], "real and fake scored in one D forward")
    explicit = t.precision if t.precision != "auto" else None
    if explicit == "fp16" and not cuda:
        raise ConfigError("train.precision", "fp16 needs a CUDA device; use bf16 on CPU")
    graphs = decide("cuda_graphs", [
        (fast, slow), (t.cuda_graphs, "train.cuda_graphs=false"), (cuda, "CUDA only"),
        (fused, "needs fused (capturable) Adam"), (not distributed, "not under torchrun (gradient all-reduce)"),
        (explicit != "fp16", "fp16 loss scaling reads values on the host"),
        (caps.graph_capturable, "the task draws random numbers outside the recorded draws (augmentation, masks)"),
        (not regs.double_backward, "a gradient penalty (double backward) is not captured"),
        (not regs.lazy, "a lazy regulariser changes the step's work from step to step"),
        (not (cfg.optim.schedule_kimg > 0 and cfg.optim.beta2_final > 0),
         "optim.beta2_final: a captured Adam step holds beta2 fixed"),
    ], "the whole step replayed as one CUDA graph")
    if explicit is not None:
        precision = explicit
        r["precision"] = f"train.precision={explicit}"
    elif not fast:
        precision, r["precision"] = "fp32", slow
    elif cuda:
        if not hardware.cuda_supports_bf16(device):
            precision, r["precision"] = "fp32", "this GPU has no bf16 tensor cores"
        elif not graphs:
            # Measured on an H100 (BENCHMARKS.md): outside a CUDA graph, autocast's extra cast
            # kernels cost more than bf16's faster math saves, for every preset.
            precision, r["precision"] = "fp32", _FP32_EAGER_CUDA
        else:
            precision, r["precision"] = "bf16", _BF16_IN_GRAPH
    elif device.type == "cpu" and hardware.cpu_supports_bf16():
        precision, r["precision"] = "bf16", "this CPU computes bf16 natively (AVX-512 BF16/AMX)"
    else:
        precision, r["precision"] = "fp32", "no native bf16 on this device (it would be emulated, slowly)"
    channels_last = decide("channels_last", [(t.channels_last, "train.channels_last=false")], "train.channels_last")
    compile_g = decide("compile_g", [(t.compile, "train.compile=false")], "train.compile")
    compile_d = decide("compile_d", [(t.compile, "train.compile=false"),
                                     (not regs.double_backward, "double backward (gradient penalty) through a "
                                      "compiled D is not supported")], "train.compile")
    cudnn = decide("cudnn_benchmark", [(fast, slow), (t.cudnn_benchmark, "train.cudnn_benchmark=false"),
                                       (cuda, "CUDA only")], "fixed shapes: autotune each convolution once")
    # TF32 keeps float32's range with a 10-bit mantissa in matmul inputs; GAN training is as
    # insensitive to that as to bf16 autocast, and fp32 steps on Ampere+ GPUs run several times faster.
    tf32 = decide("tf32", [(fast, slow), (t.tf32, "train.tf32=false"), (cuda, "CUDA only"),
                           (cuda and hardware.cuda_supports_bf16(device), "this GPU has no TF32 tensor cores")],
                  "float32 matmuls and convolutions on TF32 tensor cores")
    threads: ThreadChoice = choose_threads(getattr(t, "threads", 0), "train.threads")
    keep, keep_why = allocator.decide() if device.type == "cpu" else (
        False, "not a CPU run: the step's tensors live in the device's caching allocator")
    return ExecutionPlan(str(device), precision, channels_last, compile_g, compile_d, fused, reuse, batch_d,
                         graphs, cudnn, tf32, reasons=r, threads=threads.threads, threads_reason=threads.reason,
                         keep_freed_memory=keep, allocator_reason=keep_why)


def plan_from_dict(data: dict) -> ExecutionPlan:
    """Inverse of :meth:`ExecutionPlan.as_dict` (for tools reading ``execution.json``)."""
    values = {name: data[name]["value"] for name in SWITCHES}
    reasons = {name: data[name].get("reason", "") for name in SWITCHES}
    threads = data.get("threads", {})  # absent from files written before threads were recorded
    kept = data.get("keep_freed_memory", {})  # absent from files written before the allocator was recorded
    return ExecutionPlan(data["device"], **values, reasons=reasons, threads=threads.get("value", 0),
                         threads_reason=threads.get("reason", "PyTorch's default"),
                         keep_freed_memory=kept.get("value", False),
                         allocator_reason=kept.get("reason", "the system allocator's defaults"))

