"""Will these models fit? A cheap memory estimate, checked before the models are built.

:func:`check_fits` builds G and D on PyTorch's ``meta`` device (shapes only, no
memory, milliseconds), estimates what training (or loading) them needs, and
compares that with the memory available: RAM from ``/proc/meminfo`` (capped by
a cgroup v2 limit in a container) and, when training on a GPU, its free
memory. When it cannot fit, a :class:`ConfigError` names the config key whose
halving saves the most, instead of an allocator error minutes later.

The estimate is meant as a *lower bound*, so that it never refuses a model that would fit:

* parameters and buffers, in float32 (models are built on the CPU first, so
  they must fit in RAM even when training runs on a GPU);
* training adds gradients and two Adam moments (3x the parameters), an EMA
  copy of G when ``train.ema_decay > 0``, and the activations autograd keeps:
  the outputs of every layer of G once and of D twice (real and fake batch),
  at 2 bytes per value under bf16/fp16/auto precision and 4 under fp32.

Activations are first bounded from above from the layer shapes alone (every
feature map at most ``data.image_size`` square); only when that bound does not
fit are they measured exactly by a forward pass on meta tensors, which costs a
second or two the first time (PyTorch imports its meta kernels). Memory the
estimate leaves out (functional ops inside ``forward``, gradient penalties, the
data set, allocator slack) only makes the real need larger.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ganforge.config import RANGES, RunConfig
from ganforge.errors import ConfigError
from ganforge.models.families import ModelFamily

# Keys whose size drives memory; the one to blame is the one whose halving saves the most.
SIZE_KEYS = ("train.batch_size", "data.image_size", "model.g_width", "model.d_width", "model.z_dim",
             "model.g_layers", "model.d_layers", "model.num_classes", "model.res_blocks")


@dataclasses.dataclass
class MemoryEstimate:
    """Bytes needed by a config's models; see the module doc."""

    params_g: int
    params_d: int
    activations: int  # one training iteration at train.batch_size
    exact: bool  # activations measured (True) or an upper bound from layer shapes (False)

    def training(self, ema: bool) -> int:
        return 4 * (self.params_g + self.params_d) + (self.params_g if ema else 0) + self.activations

    def loading(self) -> int:
        return self.params_g + self.params_d


def _param_bytes(module: nn.Module) -> int:
    return 4 * sum(t.numel() for t in (*module.parameters(), *module.buffers()))  # float32 once built


def _layers(module: nn.Module) -> list[nn.Module]:
    """Leaf modules, counting a parametrized layer (spectral norm) as one."""
    return [m for name, m in module.named_modules() if "parametrizations" not in name
            and all(child == "parametrizations" for child, _ in m.named_children())]


class _SkipMetaInit(TorchFunctionMode):
    """In-place ops on meta tensors do nothing: during construction they only initialise values.

    Some (``normal_`` on an embedding, for one) have no native meta kernel, and
    the first use of PyTorch's Python meta kernels costs seconds of imports on
    every command; meta tensors have no values to initialise anyway.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.endswith("__"):  # normal_, zero_; not __get__
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def _without_spectral_norm():
    """Build layers without spectral norm: it keeps the weight's shape and adds two
    vectors, but its power iteration at construction needs the slow meta kernels."""
    from torch.nn.utils import parametrizations

    original = parametrizations.spectral_norm
    parametrizations.spectral_norm = lambda module, *args, **kwargs: module
    try:
        yield
    finally:
        parametrizations.spectral_norm = original


def _meta_build(cfg: RunConfig, family: ModelFamily) -> tuple[nn.Module, nn.Module]:
    with torch.random.fork_rng(devices=[]), _without_spectral_norm(), torch.device("meta"), _SkipMetaInit():
        return family.build(cfg)


def _outputs_bound(module: nn.Module, image_size: int) -> int:
    """Upper bound of the values all layers of ``module`` output for one image."""
    area = image_size * image_size
    bounds = []
    for m in _layers(module):
        if isinstance(m, nn.modules.conv._ConvNd):
            bounds.append(m.out_channels * area)
        elif isinstance(m, nn.Linear):
            bounds.append(m.out_features)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
            bounds.append(getattr(m, "num_features", getattr(m, "num_channels", 1)) * area)
        elif isinstance(m, nn.Embedding):
            bounds.append(m.embedding_dim)
        else:
            bounds.append(None)  # activations, pooling, resampling: as large as the largest layer
    largest = max([b for b in bounds if b is not None], default=area)
    return sum(largest if b is None else b for b in bounds)


def _measured_outputs(module: nn.Module, inputs: tuple) -> int:
    """Values output by the layers of ``module`` in one forward pass (on meta tensors: no memory)."""
    total = 0

    def count(_m, _inp, out):
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total += t.numel()

    hooks = [m.register_forward_hook(count) for m in _layers(module)]
    try:
        module(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return total


def estimate_memory(cfg: RunConfig, family: ModelFamily, exact: bool = True) -> MemoryEstimate:
    """Memory for ``family.build(cfg)`` without allocating it; ``exact=False`` bounds activations from above.

    The exact activations come from one forward pass of G and D on the inputs the
    family declares (:attr:`ModelFamily.example_inputs`), as ``meta`` tensors.
    """
    G, D = _meta_build(cfg, family)
    batch, value_bytes = cfg.train.batch_size, (4 if cfg.train.precision == "fp32" else 2)
    values = None
    if exact:
        try:
            g_in, d_in = family.example_inputs(cfg, batch, "meta")
            values = _measured_outputs(G, g_in) + 2 * _measured_outputs(D, d_in)
        except Exception:  # noqa: BLE001 - a family whose forward needs other inputs: use the bound
            values = None
    measured = values is not None
    if values is None:
        s = cfg.data.image_size
        values = batch * (_outputs_bound(G, s) + 2 * _outputs_bound(D, s))
    return MemoryEstimate(_param_bytes(G), _param_bytes(D), values * value_bytes, measured)


def available_ram() -> int | None:
    """Bytes of RAM this process can still use: MemAvailable, capped by a cgroup v2 limit; None if unknown."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max" and avail is not None:
            avail = min(avail, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return avail


def available_cuda(device: torch.device) -> int | None:
    """Free bytes on a CUDA device; None when it cannot be queried."""
    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except (RuntimeError, AssertionError, ValueError):
        return None


def _training_device(cfg: RunConfig) -> torch.device:
    name = cfg.train.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        return torch.device("cpu")  # the trainer reports the bad name
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))  # torchrun: this rank's GPU
    return device


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _culprit(cfg: RunConfig, family: ModelFamily, need: Callable[[MemoryEstimate], int], base: int) -> str:
    """The size key whose halving lowers ``need`` the most."""
    best, best_key = base, "train.batch_size"
    for key in SIZE_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        smaller = max(value // 2, int(RANGES[key].lo))
        if smaller == value:
            continue
        trial = copy.deepcopy(cfg)
        setattr(getattr(trial, section), name, smaller)
        try:
            n = need(estimate_memory(trial, family))
        except (ConfigError, ValueError, RuntimeError):
            continue  # e.g. an image size this family cannot build
        if n < best:
            best, best_key = n, key
    return best_key


def check_fits(cfg: RunConfig, family: ModelFamily, training: bool = True,
               device: torch.device | str | None = None) -> MemoryEstimate:
    """Raise ConfigError, naming the key to reduce, when ``family.build(cfg)``'s models cannot fit.

    Args:
        cfg: a validated config.
        family: the registered family (:func:`ganforge.models.families.get_family`).
        training: check what training needs (optimizer state and activations on
            the training device); False checks that the parameters can be loaded.
        device: where training runs (default: from ``train.device``).

    Returns:
        The estimate that was checked.
    """
    ema = cfg.train.ema_decay > 0
    device = torch.device(device) if device is not None else _training_device(cfg)
    checks: list[tuple[str, int | None, Callable[[MemoryEstimate], int]]] = []
    if training and device.type == "cuda":
        checks += [("RAM", available_ram(), MemoryEstimate.loading),
                   (f"free memory on {device}", available_cuda(device), lambda e: e.training(ema))]
    elif training:
        checks += [("RAM", available_ram(), lambda e: e.training(ema))]
    else:
        checks += [("RAM", available_ram(), MemoryEstimate.loading)]
    est = estimate_memory(cfg, family, exact=False)  # cheap; exact only when the bound does not fit
    for what, avail, need in checks:
        if avail is None or need(est) <= avail:
            continue
        if not est.exact and training:
            est = estimate_memory(cfg, family, exact=True)
            if need(est) <= avail:
                continue
        n = need(est)
        key = _culprit(cfg, family, need, n)
        task = "train" if training else "load"
        acts = f", activations at batch {cfg.train.batch_size} {_size(est.activations)}" if training else ""
        raise ConfigError(key, f"the {cfg.model.arch} models need at least {_size(n)} to {task} (parameters "
                               f"{_size(est.params_g + est.params_d)}{acts}) but {what} has {_size(avail)} "
                               f"available; reduce {key}")
    return est
