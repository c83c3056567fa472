"""The run configuration: a typed tree of dataclasses (declared in :mod:`ganforge.config_schema`).

A config is loaded from YAML, overridden from the command line with
``section.key=value`` pairs, validated, and written next to the run as
``config.yaml`` (the resolved config). Unknown keys, wrong types and
impossible values raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ganforge import safe_yaml
from ganforge.config_schema import (AUGMENTATIONS, BIG, CHOICES, RANGES, DataConfig, InpaintConfig, LossConfig,
                                    ModelConfig, OptimConfig, Range, RunConfig, TrainConfig)
from ganforge.errors import ConfigError, quote

__all__ = ["AUGMENTATIONS", "BIG", "CHOICES", "RANGES", "DataConfig", "InpaintConfig", "LossConfig", "ModelConfig",
           "OptimConfig", "Range", "RunConfig", "TrainConfig", "apply_overrides", "diff_configs", "dump_yaml",
           "from_dict", "load_config", "load_yaml", "migrate", "parse_policy", "to_dict", "to_flat_dict", "validate"]

log = logging.getLogger(__name__)


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
        raise ConfigError(key, f"expected true/false, got {quote(value)}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, f"expected an integer, got {quote(value)}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {quote(value)}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {quote(value)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {quote(value)}")
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


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,cutout"`` -> ("translation", "cutout"); unknown names -> ConfigError."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    for name in names:
        if name not in AUGMENTATIONS:
            raise ConfigError("train.augment", f"unknown augmentation {name!r} (known: {', '.join(AUGMENTATIONS)})")
    return names


def validate(cfg: RunConfig) -> RunConfig:
    """Reject impossible values, naming the key. Returns ``cfg`` unchanged."""
    flat = to_flat_dict(cfg)
    for key, allowed in RANGES.items():
        value = flat[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # a RunConfig built in Python
            raise ConfigError(key, f"expected a number, got {quote(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {value}")
        if value not in allowed:
            raise ConfigError(key, f"must be in {allowed}, got {quote(value)}")
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(key, f"must be one of {', '.join(map(str, choices))}, got {quote(flat[key])}")
    kinds, eval_masks = CHOICES["inpaint.masks"], flat["inpaint.eval_masks"]
    if eval_masks not in ("", *kinds):
        raise ConfigError("inpaint.eval_masks", f"must be empty (the training masks) or one of {', '.join(kinds)}, "
                                                f"got {quote(eval_masks)}")
    # Losses and model families are registries (plug-ins add to them): their names are checked
    # against them. Imported here, not at the top: the CLI parser reads this module without torch.
    from ganforge.losses import get_loss
    from ganforge.models.families import get_family

    get_loss(cfg.loss.name)
    get_family(cfg.model.arch)  # importing the registry imports ganforge.models, which registers the built-ins
    # Which resolutions a resnet has depends on data.image_size; ganforge.models.resnet checks that.
    if cfg.model.attention and cfg.model.arch != "resnet":
        raise ConfigError("model.attention", f"self-attention is only available with model.arch=resnet "
                          f"(this run is {cfg.model.arch}); set it to 0, got {cfg.model.attention}")
    if cfg.model.block != "basic" and cfg.model.arch != "resnet":
        raise ConfigError("model.block", f"block shapes are a choice of model.arch=resnet (this run is "
                          f"{cfg.model.arch}); leave it at basic, got {cfg.model.block}")
    if cfg.model.g_norm != "batch" and cfg.model.arch != "resnet":
        raise ConfigError("model.g_norm", f"G's norms are a choice of model.arch=resnet (this run is "
                          f"{cfg.model.arch}); leave it at batch, got {cfg.model.g_norm}")
    if cfg.loss.gamma > 0 and (cfg.loss.r1_weight > 0 or cfg.loss.r2_weight > 0):
        raise ConfigError("loss.gamma", "weights R1 and R2 together; set loss.r1_weight and loss.r2_weight to 0 "
                          "(or use those two alone instead of loss.gamma)")
    scale = cfg.data.crop_scale
    if len(scale) != 2 or not all(math.isfinite(v) for v in scale) or not 0 < scale[0] <= scale[1] <= 1:
        raise ConfigError("data.crop_scale", f"must be [lo, hi] with 0 < lo <= hi <= 1, got {quote(scale)}")
    if cfg.optim.schedule_kimg > 0 and (cfg.optim.lr_warmup > 0 or cfg.optim.lr_decay != "none"):
        raise ConfigError("optim.schedule_kimg", "the image-based schedule replaces optim.lr_warmup and "
                          "optim.lr_decay; set those to 0 and none")
    if cfg.inpaint.random_crop and 0 < cfg.inpaint.load_size < cfg.data.image_size:
        raise ConfigError("inpaint.load_size", f"must be at least data.image_size ({cfg.data.image_size}) "
                          f"to crop from, got {cfg.inpaint.load_size}")
    _validate_subset_and_transfer(cfg)
    if not cfg.name or "/" in cfg.name or cfg.name in (".", "..") or len(cfg.name) > 128:
        raise ConfigError("name", f"must be a plain directory name of at most 128 characters, got {quote(cfg.name)}")
    parse_policy(cfg.train.augment)
    _validate_eval_metrics(cfg.train.eval_metrics)
    return cfg


def _validate_eval_metrics(names) -> None:
    """The form of ``train.eval_metrics``; whether each name is registered is checked where metrics are loaded."""
    if not isinstance(names, list) or not names:
        raise ConfigError("train.eval_metrics", f"must be a non-empty list of metric names, got {quote(names)}")
    for name in names:
        if not isinstance(name, str) or not name.strip() or "," in name or " " in name.strip():
            raise ConfigError("train.eval_metrics", f"each entry is one metric name, got {quote(name)}")
    lowered = [n.strip().lower() for n in names]
    if "auto" in lowered and len(lowered) > 1:
        raise ConfigError("train.eval_metrics", f"auto chooses the metric itself: give it alone, got {names}")
    if len(set(lowered)) != len(lowered):
        raise ConfigError("train.eval_metrics", f"lists a metric twice: {names}")


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
    """Bring an older config up to date, in place: keys of :data:`MOVED_KEYS` move to their new section
    (a key given in both is an error), and a config without ``task`` gets the task its
    ``model.arch`` implied (``inpaint`` trained inpainting, every other family generation).
    """
    model = data.get("model")
    if "task" not in data and isinstance(model, dict) and model.get("arch") == "inpaint":
        data["task"] = "inpaint"
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


def _parse_value(text: str, key: str) -> Any:
    """Parse an override value with YAML scalars (1e-4, true, null, 'text'); text that is not YAML stays text."""
    try:
        return safe_yaml.load(text, key)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings to a nested dict (in place) and return it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "override must look like section.key=value")
        key, text = item.split("=", 1)
        if not text.strip():  # YAML reads "" as null: `train.init_from=` would silently mean "none"
            raise ConfigError(key.strip() or item, "has an empty value; write null to unset it")
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(key, f"{part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_value(text, key)
    return data


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file into a dict (empty file -> {}); see :mod:`ganforge.safe_yaml` for the bounds."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "config file not found")
    if path.stat().st_size > safe_yaml.MAX_BYTES:
        raise ConfigError(path, f"{path.stat().st_size} bytes; config files are at most {safe_yaml.MAX_BYTES}")
    try:
        data = safe_yaml.load(path.read_text(encoding="utf-8"), str(path))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, "top level must be a mapping of sections")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML file or a built-in preset by name (or the defaults), apply overrides, validate."""
    from ganforge.preset_files import find_preset

    data = load_yaml(find_preset(path)) if path is not None else {}
    return from_dict(apply_overrides(data, list(overrides or [])))


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def diff_configs(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ: ``{"section.key": (old, new)}``."""
    a, b = to_flat_dict(old), to_flat_dict(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
