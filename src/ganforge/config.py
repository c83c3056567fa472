"""The run configuration: a typed tree of dataclasses.

A config is loaded from YAML, overridden from the command line with
``section.key=value`` pairs, validated, and written next to the run as
``config.yaml`` (the resolved config). Unknown keys, wrong types and
impossible values raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ganforge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """Where images come from and how they are shaped for the model."""

    dataset: str = "fashion-mnist"  # named dataset, image folder, IDX/CIFAR dir or .npz
    root: str | None = None  # explicit directory for a named dataset
    split: str = "train"
    image_size: int = 28
    channels: int = 1
    download: bool = True
    # Subsets (ganforge.data.subset): keep only these class ids (labels are kept as they
    # are), then the first `limit` images after a shuffle seeded by subset_seed.
    classes: list[int] | None = None  # None: every class
    limit: int = 0  # 0: every image
    subset_seed: int = 0


@dataclass
class ModelConfig:
    """Generator and discriminator architecture."""

    arch: str = "dcgan"  # mlp | dcgan | resnet | mlp-res | inpaint
    z_dim: int = 100
    g_width: int = 64  # base channel (or unit) count of G
    d_width: int = 64
    g_layers: int = 3  # MLP families: hidden layers
    d_layers: int = 3
    num_classes: int = 0  # 0: unconditional; >0: class-conditional
    spectral_norm_d: bool = False
    spectral_norm_g: bool = False
    d_batchnorm: bool = True  # DCGAN D: BatchNorm after strided convs (off for WGAN-GP)
    dropout: float = 0.0  # MLP D dropout (Goodfellow et al. used dropout)
    res_blocks: int = 6  # inpainting: residual blocks in the bottleneck


@dataclass
class LossConfig:
    """Adversarial objective and regularisers."""

    name: str = "ns"  # ns | minimax | wgan | wgan-gp | hinge | ls
    gp_weight: float = 10.0  # used by wgan-gp
    r1_weight: float = 0.0  # R1 penalty on real data; 0 = off
    r1_every: int = 16  # lazy R1: every k D steps, scaled by k
    label_smoothing: float = 0.0  # one-sided: real target 1 - s
    weight_clip: float = 0.01  # WGAN critic weight clipping


@dataclass
class OptimConfig:
    """Adam for both players, DCGAN defaults."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_dis: int = 1  # discriminator steps per generator step
    grad_clip: float = 0.0  # max grad norm for both players; 0 = off


@dataclass
class TrainConfig:
    """Loop length, logging, checkpoints and execution mode."""

    steps: int = 2000  # generator steps
    batch_size: int = 64
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 1000
    keep_last: int = 3
    sample_grid: int = 64  # images in the fixed-noise grid
    ema_decay: float = 0.0  # 0 = no EMA generator
    ema_start: int = 0  # steps before EMA starts tracking (warm-up copies G)
    augment: str = ""  # DiffAugment policy, e.g. "translation,cutout,color"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Execution paths (BENCHMARKS.md): fast=false is the plain reference loop
    # (fp32 under precision=auto, foreach Adam, separate D passes, fresh fakes).
    fast: bool = True
    fused_optim: bool = True  # fused Adam kernels (CPU and CUDA)
    reuse_fake: bool = True  # the last D step's G(z) also serves the G step
    batch_d: bool = True  # D(real) and D(fake) in one forward when D has no BatchNorm
    cuda_graphs: bool = True  # capture the training step on CUDA when eligible
    cudnn_benchmark: bool = True
    sync_bn: bool = False  # SyncBatchNorm under torchrun (CUDA only)
    eval_every: int = 0  # periodic evaluation (0 = off)
    eval_n: int = 2000
    # Numerical faults: a non-finite loss or gradient skips the update; after
    # max_bad_steps bad iterations in a row the run rolls back to its last
    # checkpoint with learning rates times rollback_lr_factor; after
    # max_rollbacks rollbacks it stops with a diagnosis.
    max_bad_steps: int = 20
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5
    # Transfer learning (ganforge.train.transfer): start a new run from another run's
    # weights (a run directory, an exported generator or a .safetensors file).
    init_from: str | None = None
    init_partial: bool = False  # re-initialise layers whose shapes differ instead of refusing
    init_lr_mult: float = 1.0  # learning-rate multiplier of the loaded parameters
    freeze_d: int = 0  # FreezeD: D's first K blocks (from the image) stay fixed
    freeze_g: int = 0  # G's first K blocks (from the noise) stay fixed


@dataclass
class InpaintConfig:
    """Inpainting (``model.arch: inpaint``): masks, crops and the generator's loss weights."""

    masks: str = "mixed"  # center | boxes | strokes | mixed
    hole_ratio: float = 0.25  # target fraction of missing pixels
    random_crop: bool = False  # train on random crops of images loaded at load_size
    load_size: int = 0  # 0: same as data.image_size
    # G loss = l1_hole * L1(hole) + l1_valid * L1(known) + adv_weight * adversarial + feature_matching * FM
    l1_hole: float = 6.0
    l1_valid: float = 1.0
    feature_matching: float = 0.0
    adv_weight: float = 0.1


@dataclass
class RunConfig:
    """The whole configuration of a run."""

    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)


_CHOICES = {
    "model.arch": ("mlp", "dcgan", "resnet", "mlp-res", "inpaint"),
    "loss.name": ("ns", "minimax", "wgan", "wgan-gp", "hinge", "ls"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "data.split": ("train", "test", "all"),
    "inpaint.masks": ("center", "boxes", "strokes", "mixed"),
}
_POSITIVE = ("train.steps", "train.batch_size", "optim.n_dis", "data.image_size", "model.z_dim",
             "model.g_width", "model.d_width", "train.log_every", "train.sample_every",
             "train.ckpt_every", "train.keep_last", "loss.r1_every", "train.sample_grid", "train.max_bad_steps")
_NON_NEGATIVE = ("optim.grad_clip", "loss.gp_weight", "loss.r1_weight", "loss.weight_clip",
                 "model.num_classes", "train.eval_every", "inpaint.l1_hole", "inpaint.l1_valid",
                 "inpaint.feature_matching", "inpaint.adv_weight", "train.ema_start", "model.dropout",
                 "train.max_rollbacks", "data.limit", "train.freeze_d", "train.freeze_g")


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field annotation, converting where lossless."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        (item,) = typing.get_args(annotation) or (Any,)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(key, f"unsupported type {annotation!r}")


def _build(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(prefix or "config", f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(where, f"unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, data[f.name], key)
        else:
            kwargs[f.name] = _convert(data[f.name], hint, key)
    return cls(**kwargs)


def validate(cfg: RunConfig) -> RunConfig:
    """Reject impossible values, naming the key. Returns ``cfg`` unchanged."""
    flat = to_flat_dict(cfg)
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(key, f"must be one of {', '.join(choices)}, got {flat[key]!r}")
    for key in _POSITIVE:
        if flat[key] <= 0:
            raise ConfigError(key, f"must be positive, got {flat[key]}")
    for key in _NON_NEGATIVE:
        if flat[key] < 0:
            raise ConfigError(key, f"must be >= 0, got {flat[key]}")
    for key in ("optim.lr_g", "optim.lr_d"):
        if not flat[key] > 0:
            raise ConfigError(key, f"learning rate must be positive, got {flat[key]}")
    for key in ("optim.beta1", "optim.beta2", "train.ema_decay"):
        if not 0.0 <= flat[key] < 1.0:
            raise ConfigError(key, f"must be in [0, 1), got {flat[key]}")
    if not 0.0 < cfg.train.rollback_lr_factor <= 1.0:
        raise ConfigError("train.rollback_lr_factor", f"must be in (0, 1], got {cfg.train.rollback_lr_factor}")
    if not 0.0 <= cfg.loss.label_smoothing < 0.5:
        raise ConfigError("loss.label_smoothing", f"must be in [0, 0.5), got {cfg.loss.label_smoothing}")
    if cfg.data.channels not in (1, 3):
        raise ConfigError("data.channels", f"must be 1 or 3, got {cfg.data.channels}")
    if not 0.0 < cfg.inpaint.hole_ratio < 1.0:
        raise ConfigError("inpaint.hole_ratio", f"must be in (0, 1), got {cfg.inpaint.hole_ratio}")
    if cfg.inpaint.random_crop and 0 < cfg.inpaint.load_size < cfg.data.image_size:
        raise ConfigError("inpaint.load_size", f"must be at least data.image_size ({cfg.data.image_size}) "
                          f"to crop from, got {cfg.inpaint.load_size}")
    _validate_subset_and_transfer(cfg)
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError("name", f"must be a plain directory name, got {cfg.name!r}")
    from ganforge.augment import parse_policy  # local: avoids an import cycle
    parse_policy(cfg.train.augment)
    return cfg


def _validate_subset_and_transfer(cfg: RunConfig) -> None:
    classes = cfg.data.classes
    if classes is not None:
        if not classes:
            raise ConfigError("data.classes", "is empty; leave it out (null) to keep every class")
        bad = [c for c in classes if c < 0]
        if bad:
            raise ConfigError("data.classes", f"class ids must be >= 0, got {bad[0]}")
        if len(set(classes)) != len(classes):
            raise ConfigError("data.classes", f"lists a class twice: {classes}")
    if not (cfg.train.init_lr_mult > 0 and cfg.train.init_lr_mult < float("inf")):
        raise ConfigError("train.init_lr_mult", f"must be a positive finite number, got {cfg.train.init_lr_mult}")
    if cfg.train.init_from is not None and not cfg.train.init_from.strip():
        raise ConfigError("train.init_from", "is empty; leave it out (null) to start from random weights")
    if cfg.train.init_from is None:
        for key in ("init_partial", "init_lr_mult", "freeze_d", "freeze_g"):
            if getattr(cfg.train, key) != getattr(TrainConfig, key):
                raise ConfigError(f"train.{key}", "only applies with train.init_from (pretrained weights)")


# Keys that moved between sections: (old section, new section, key). Configs written before
# the move (presets, a run's config.yaml, overrides) are migrated with a log line.
MOVED_KEYS = tuple(("loss", "inpaint", k) for k in ("l1_hole", "l1_valid", "feature_matching", "adv_weight"))


def migrate(data: dict) -> dict:
    """Move keys of :data:`MOVED_KEYS` to their new section (in place); a key given in both is an error."""
    for old, new, key in MOVED_KEYS:
        section = data.get(old)
        if not isinstance(section, dict) or key not in section:
            continue
        target = data.setdefault(new, {})
        if not isinstance(target, dict):
            continue  # _build reports the malformed section
        if key in target:
            raise ConfigError(f"{old}.{key}", f"moved to {new}.{key}, which is also set; keep only {new}.{key}")
        target[key] = section.pop(key)
        log.info("config: %s.%s is now %s.%s", old, key, new, key)
    return data


def from_dict(data: dict) -> RunConfig:
    """Build and validate a :class:`RunConfig` from a nested dict (old key names are migrated)."""
    return validate(_build(RunConfig, migrate(data or {}), ""))


def to_dict(cfg: RunConfig) -> dict:
    """The config as a nested dict of plain values."""
    return dataclasses.asdict(cfg)


def to_flat_dict(cfg: RunConfig) -> dict:
    """The config as ``{"section.key": value}``."""
    flat: dict = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(v, key)
            else:
                flat[key] = v

    walk(to_dict(cfg), "")
    return flat


def _parse_value(text: str) -> Any:
    """Parse an override value with YAML scalars (1e-4, true, null, 'text')."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings to a nested dict (in place) and return it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "override must look like section.key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(key, f"{part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_value(text)
    return data


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file into a dict (empty file -> {})."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, "top level must be a mapping of sections")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML file (or the defaults), apply overrides, validate."""
    data = load_yaml(path) if path is not None else {}
    return from_dict(apply_overrides(data, list(overrides or [])))


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def diff_configs(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ: ``{"section.key": (old, new)}``."""
    a, b = to_flat_dict(old), to_flat_dict(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
