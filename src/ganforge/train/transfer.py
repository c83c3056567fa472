"""Transfer learning: start a new run from pretrained weights, freeze blocks, scale learning rates.

Config (``train`` section)::

    init_from: PATH      a run directory (newest valid checkpoint), one checkpoint directory,
                         an exported generator (ganforge export) or a .safetensors file
    init_partial: bool   layers whose names or shapes differ are re-initialised (else refused)
    init_lr_mult: float  learning-rate multiplier of the parameters loaded from PATH
    freeze_d: K          D's first K blocks (from the image) stay fixed (FreezeD, Mo et al. 2020)
    freeze_g: K          G's first K blocks (from the noise) stay fixed

What is loaded: G from the source's G, D from its D, and the EMA generator
from its EMA generator (a source without one: the EMA copy starts as the
loaded G, as in any run). An exported generator or a bare generator file
gives G (and the EMA copy) only; D keeps its fresh initialisation. A
``.safetensors`` file whose tensors are named ``G.*`` / ``D.*`` / ``G_ema.*``
(a checkpoint's ``weights.safetensors``) gives each; any other file is taken
as G's ``state_dict``. Everything is read by the safe readers of
:mod:`ganforge.checkpoint` and :mod:`ganforge.weights` (safetensors only, never
pickle; names, shapes, dtypes and finiteness checked). Optimizer state, step
counters and random streams start fresh: the new run is a new run.

What a block is: each model family lists its blocks, in the order data flows,
with a ``transfer_blocks()`` method (see the model classes): e.g. DCGAN's D has one block
per strided convolution (with its norm) and the linear head as the last block.
At least one block of each network must stay trainable.

How freezing works: a frozen block's parameters become persistent buffers of
the same name. So they are not in ``module.parameters()`` (the optimizers
never see them and Adam cannot move them), ``module.requires_grad_(True)``
(which the trainer calls around the G step) cannot unfreeze them, no weight
gradient is computed for them, and checkpoints keep the same tensor names (a
frozen run's checkpoint loads into an unfrozen model and vice versa). Batch-norm
running statistics and spectral norm's power-iteration vectors inside frozen blocks keep
updating, as in any training step.

Resume: the names loaded from the source are recorded in ``RUN/transfer.json``
when the run starts; resuming rebuilds the same freezing and parameter groups
from that record (and the checkpoint's weights), without reading the source
again, so a resumed fine-tuning run is bit-identical like any other.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ganforge import checkpoint as ckpt
from ganforge.artifacts import EXPORT_WEIGHTS
from ganforge.config import RunConfig
from ganforge.errors import CheckpointError, ConfigError
from ganforge.weights import read_state_file

log = logging.getLogger(__name__)

RECORD = "transfer.json"
_PREFIXES = ("G", "D", "G_ema")


@dataclass
class TransferPlan:
    """What a run took from its source; written to ``RUN/transfer.json`` and ``metrics.jsonl``.

    Attributes:
        source: ``train.init_from`` as given.
        kind: ``"run"``, ``"checkpoint"``, ``"export"`` or ``"file"``.
        source_step: the source checkpoint's step (None for files and exports without one).
        sha256: of the weights file read.
        loaded: per network (``G``, ``D``, ``G_ema``), the state names taken from the source.
        reinitialised: per network, the state names that kept their fresh initialisation.
        frozen: per network, the parameter names that training does not change.
    """

    source: str
    kind: str
    source_step: int | None = None
    sha256: str | None = None
    loaded: dict[str, list[str]] = field(default_factory=dict)
    reinitialised: dict[str, list[str]] = field(default_factory=dict)
    frozen: dict[str, list[str]] = field(default_factory=dict)
    ema_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # loaded after EMA exists

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("ema_state")
        return d


# ------------------------------------------------------------------ reading the source

def _split_prefixed(state: dict[str, torch.Tensor], where: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{"G.x": t, "D.y": u}`` -> ``{"G": {"x": t}, "D": {"y": u}}``; unprefixed names are G's."""
    heads = {k.partition(".")[0] for k in state}
    if not heads <= set(_PREFIXES):
        if heads & set(_PREFIXES) and any("." in k for k in state):
            odd = sorted(heads - set(_PREFIXES))[:3]
            raise CheckpointError(where, f"mixes G./D./G_ema. names with others ({odd}); cannot tell whose they are")
        return {"G": state}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        module, _, name = key.partition(".")
        out.setdefault(module, {})[name] = value
    return out


def _check_arch(config_path: Path, cfg: RunConfig) -> None:
    from ganforge.config import load_config

    source_cfg = load_config(config_path)
    if source_cfg.model.arch != cfg.model.arch:
        raise ConfigError("train.init_from", f"{config_path.parent} is a {source_cfg.model.arch!r} model, "
                          f"this run is {cfg.model.arch!r}")


def read_source(path: str | Path, cfg: RunConfig) -> tuple[dict[str, dict[str, torch.Tensor]], TransferPlan]:
    """The state dicts a source provides (``{"G": ..., "D": ..., "G_ema": ...}``) and its description.

    Raises:
        CheckpointError: missing, unreadable, pickle-based or malformed weights.
        ConfigError: the source is a run of another model family.
    """
    src = Path(path).expanduser()
    given = str(path)
    _check_fits_in_memory(src)
    if src.is_dir():
        if (src / "manifest.json").is_file():  # one checkpoint directory
            c = ckpt.load_checkpoint(src)
            if (src.parent.parent / "config.yaml").is_file():
                _check_arch(src.parent.parent / "config.yaml", cfg)
            return c.weights, TransferPlan(given, "checkpoint", c.step, ckpt.sha256_file(src / "weights.safetensors"))
        if not (src / "config.yaml").is_file():
            raise CheckpointError(src, "not a run directory, checkpoint or exported generator (no config.yaml)")
        _check_arch(src / "config.yaml", cfg)
        if (src / EXPORT_WEIGHTS).is_file() and not (src / "checkpoints").is_dir():
            state = read_state_file(src / EXPORT_WEIGHTS)
            return {"G": state}, TransferPlan(given, "export", None, ckpt.sha256_file(src / EXPORT_WEIGHTS))
        c = ckpt.find_latest(src)
        if c is None:
            raise CheckpointError(src / "checkpoints", "no valid checkpoint to initialise from")
        return c.weights, TransferPlan(given, "run", c.step, ckpt.sha256_file(c.path / "weights.safetensors"))
    state = read_state_file(src)  # refuses pickles and anything that is not safetensors
    return _split_prefixed(state, src), TransferPlan(given, "file", None, ckpt.sha256_file(src))


def _files_read(src: Path) -> list[Path]:
    """The files :func:`read_source` reads whole into memory for ``src``."""
    if not src.is_dir():
        return [src]
    if (src / "manifest.json").is_file():
        return [src / "weights.safetensors", src / "train.safetensors"]
    if (src / EXPORT_WEIGHTS).is_file() and not (src / "checkpoints").is_dir():
        return [src / EXPORT_WEIGHTS]
    newest = ckpt.list_checkpoints(src / "checkpoints")[:1]
    return [p / name for _, p in newest for name in ("weights.safetensors", "train.safetensors")]


def available_memory() -> int | None:
    """Bytes this process can still allocate: free RAM (and a cgroup limit), capped by ``ulimit -v``."""
    from ganforge.models.preflight import available_ram

    avail = available_ram()
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/status", encoding="ascii") as f:
                vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
            left = max(soft - vm, 0)
            avail = left if avail is None else min(avail, left)
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    return avail


def _check_fits_in_memory(src: Path) -> None:
    """Refuse, before reading it, a source whose files are larger than the memory left (a MemoryError later)."""
    try:
        need = sum(p.stat().st_size for p in _files_read(src) if p.is_file())
    except OSError:
        return  # the reader reports it
    avail = available_memory()
    if avail is not None and need > avail:
        raise CheckpointError(src, f"is {need / 2**30:.2f} GiB to read into memory, but only "
                                   f"{avail / 2**30:.2f} GiB is available")


# ------------------------------------------------------------------ matching and loading

def match_state(module: nn.Module, source: dict[str, torch.Tensor], where: str,
                partial: bool) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Merge ``source`` into ``module``'s own state: ``(state to load, loaded names, re-initialised names)``.

    Names missing from the source, names the model lacks, and shapes that differ
    are refused with one :class:`CheckpointError` listing them, unless ``partial``:
    then those entries keep the module's fresh values (and extra source names are
    dropped). Dtypes and finiteness are checked when the merged state is loaded.
    """
    own = module.state_dict()
    problems = []
    for k in sorted(set(own) | set(source)):
        if k not in source:
            problems.append((k, "not in the source"))
        elif k not in own:
            problems.append((k, "not in this model"))
        elif tuple(source[k].shape) != tuple(own[k].shape):
            problems.append((k, f"source {tuple(source[k].shape)}, model {tuple(own[k].shape)}"))
    bad = {k for k, _ in problems}
    loaded = [k for k in own if k in source and k not in bad]
    if problems and not partial:
        shown = "; ".join(f"{k} ({why})" for k, why in problems[:4])
        more = f" and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise CheckpointError(where, f"{len(problems)} entries do not match the model: {shown}{more}; "
                              "set train.init_partial=true to re-initialise them")
    if not any(torch.is_floating_point(own[k]) for k in loaded):
        raise CheckpointError(where, "no layer matches this model (another architecture or width?)")
    merged = {k: (source[k] if k in loaded else v) for k, v in own.items()}
    return merged, loaded, [k for k in own if k not in loaded]


def _load(module: nn.Module, name: str, source: dict[str, torch.Tensor], plan: TransferPlan,
          partial: bool) -> dict[str, torch.Tensor]:
    where = f"{plan.source} ({name})"
    merged, loaded, reinit = match_state(module, source, where, partial)
    plan.loaded[name], plan.reinitialised[name] = loaded, reinit
    if reinit:
        log.warning("init_from: %s keeps its fresh initialisation for %d entries: %s", name, len(reinit),
                    ", ".join(reinit))
    return merged


# ------------------------------------------------------------------ freezing

def model_blocks(module: nn.Module, key: str) -> list[list[nn.Module]]:
    """The module's blocks (see the module doc); ConfigError when its family does not define them."""
    if not callable(getattr(module, "transfer_blocks", None)):
        raise ConfigError(key, f"{type(module).__name__} does not define blocks to freeze")
    return module.transfer_blocks()


def freeze(module: nn.Module, k: int, key: str) -> list[str]:
    """Freeze the first ``k`` blocks of ``module``: their parameters become buffers of the same name.

    Returns the frozen parameter names. ConfigError when ``k`` leaves no block trainable.
    """
    if k <= 0:
        return []
    blocks = model_blocks(module, key)
    if k >= len(blocks):
        raise ConfigError(key, f"{k}, but {type(module).__name__} has {len(blocks)} blocks; "
                          f"at most {len(blocks) - 1} can be frozen")
    chosen = {id(m) for block in blocks[:k] for part in block for m in part.modules()}
    frozen = []
    for mod_name, mod in module.named_modules():
        if id(mod) not in chosen:
            continue
        for p_name, p in list(mod._parameters.items()):
            if p is None:  # e.g. a convolution without bias
                continue
            del mod._parameters[p_name]
            mod.register_buffer(p_name, p.detach(), persistent=True)
            frozen.append(f"{mod_name}.{p_name}" if mod_name else p_name)
    return frozen


# ------------------------------------------------------------------ the trainer's entry points

def _has_checkpoints(run_dir: Path) -> bool:
    return bool(ckpt.list_checkpoints(Path(run_dir) / "checkpoints"))


def initialise(cfg: RunConfig, G: nn.Module, D: nn.Module, run_dir: str | Path) -> TransferPlan | None:
    """Load the source into freshly built G and D, then freeze; None when ``train.init_from`` is unset.

    Call after the models are built and before the EMA copy and the optimizers
    are made. A run that already has checkpoints (a resume) takes the names it
    loaded from ``RUN/transfer.json`` instead of reading the source again; its
    weights then come from its own checkpoint.
    """
    t = cfg.train
    if t.init_from is None:
        return None
    record = Path(run_dir) / RECORD
    resuming = _has_checkpoints(run_dir)
    plan = None
    if resuming and record.is_file():
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            plan = TransferPlan(**{k: data[k] for k in ("source", "kind", "source_step", "sha256", "loaded",
                                                         "reinitialised")})
        except (OSError, ValueError, KeyError, TypeError):
            raise CheckpointError(record, "unreadable transfer record") from None
    elif resuming:  # the record is lost: the run's own files tell what was loaded
        from ganforge.train.transfer_record import rebuild_plan

        plan = rebuild_plan(run_dir, {"G": G, "D": D}, TransferPlan(t.init_from, "unknown"))
        if plan is None and not Path(t.init_from).expanduser().exists():
            raise CheckpointError(record, f"missing, and neither metrics.jsonl nor the checkpoints tell which "
                                          f"layers came from {t.init_from} (which is gone)")
    if plan is None:
        states, plan = read_source(t.init_from, cfg)
        if "G" not in states:
            raise CheckpointError(t.init_from, "has no generator weights")
        for name, module in (("G", G), ("D", D)):
            if name in states:
                merged = _load(module, name, states[name], plan, t.init_partial)
                ckpt.load_module_state(module, merged, f"{plan.source} ({name})")
        if "G_ema" in states and cfg.train.ema_decay > 0:
            plan.ema_state = _load(G, "G_ema", states["G_ema"], plan, t.init_partial)
        log.info("init_from %s (%s%s): loaded %s", plan.source, plan.kind,
                 "" if plan.source_step is None else f" step {plan.source_step}",
                 ", ".join(f"{n} {len(v)} tensors" for n, v in plan.loaded.items()))
    if t.freeze_d and "D" not in plan.loaded:
        raise ConfigError("train.freeze_d", f"{plan.source} has no discriminator weights; "
                          "freezing randomly initialised blocks would fix noise")
    plan.frozen = {"G": freeze(G, t.freeze_g, "train.freeze_g"), "D": freeze(D, t.freeze_d, "train.freeze_d")}
    return plan


def load_ema(ema, plan: TransferPlan | None) -> None:
    """Load the source's EMA generator into the run's EMA copy (after :func:`initialise`; no-op otherwise)."""
    if ema is None or plan is None or plan.ema_state is None:
        return
    ckpt.load_module_state(ema.model, plan.ema_state, f"{plan.source} (G_ema)")
    plan.ema_state = None  # the copy holds it now


def param_groups(plan: TransferPlan | None, name: str, module: nn.Module, lr: float,
                 cfg: RunConfig) -> list:
    """Adam's parameters for ``module``: a plain list, or groups ``loaded`` (lr x init_lr_mult) and ``new``.

    Frozen parameters are not parameters any more (see :func:`freeze`), so they
    are in neither group. The group name is kept in the optimizer state, so that
    learning-rate changes (rollbacks) keep the multiplier (``lr_mult``, read by
    :func:`ganforge.train.optim.set_learning_rates`).
    """
    params = list(module.named_parameters())
    if plan is None:
        return [p for _, p in params]
    loaded = set(plan.loaded.get(name, []))
    mult = cfg.train.init_lr_mult
    groups = [{"params": [p for n, p in params if n in loaded], "lr": lr * mult, "lr_mult": mult, "name": "loaded"},
              {"params": [p for n, p in params if n not in loaded], "lr": lr, "lr_mult": 1.0, "name": "new"}]
    return [g for g in groups if g["params"]]


def record(run_dir: str | Path, plan: TransferPlan, metrics) -> dict:
    """Write ``RUN/transfer.json`` and a step-0 ``init_from`` event to ``metrics.jsonl``; returns the event."""
    data = plan.to_json()
    path = Path(run_dir) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    event = {"step": 0, "event": "init_from", "source": plan.source, "kind": plan.kind,
             "source_step": plan.source_step, "sha256": plan.sha256,
             "loaded": {k: len(v) for k, v in plan.loaded.items()},
             "reinitialised": {k: v for k, v in plan.reinitialised.items() if v},
             "frozen": {k: len(v) for k, v in plan.frozen.items()}}
    metrics.write(event)
    return event
