"""Tasks by name: the ``task:`` config key chooses one.

A task registers itself with :func:`register_task` (from its own module, a
plug-in or a test); :func:`task_class` is the one lookup every consumer uses.
Configs written before the ``task:`` key existed are migrated by
:func:`ganforge.config.migrate` (``model.arch: inpaint`` meant inpainting).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ganforge.config import RunConfig
from ganforge.errors import ConfigError, quote
from ganforge.tasks.base import Task
from ganforge.tasks.draws import Draws

TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: register a :class:`~ganforge.tasks.base.Task` subclass as ``task: name``."""
    if not name or name != name.strip():
        raise ValueError(f"task name must be non-empty without surrounding spaces: {name!r}")

    def decorate(cls: type[Task]) -> type[Task]:
        if name in TASKS:
            raise ValueError(f"task {name!r} is already registered")
        cls.name = name
        TASKS[name] = cls
        return cls

    return decorate


def unregister_task(name: str) -> None:
    """Remove a registered task (plug-ins and tests); unknown names are ignored."""
    TASKS.pop(name, None)


def task_names() -> tuple[str, ...]:
    """Registered task names, in registration order."""
    return tuple(TASKS)


def task_class(cfg: RunConfig) -> type[Task]:
    """The task class of ``cfg.task``, checked against ``cfg.model.arch``.

    Training also asks the task's own rules (:meth:`~ganforge.tasks.base.Task.check_config`).

    Raises:
        ConfigError: naming ``task`` (unknown) or ``model.arch`` (unknown, or a family the task does not train).
    """
    from ganforge.models import model_names

    cls = TASKS.get(cfg.task)
    if cls is None:
        raise ConfigError("task", f"must be one of {', '.join(TASKS)}, got {quote(cfg.task)}")
    arch = cfg.model.arch
    if arch not in model_names():
        raise ConfigError("model.arch", f"must be one of {', '.join(model_names())}, got {quote(arch)}")
    owner = next((t for t in TASKS.values() if t.families and arch in t.families), None)
    if cls.families is not None and arch not in cls.families:
        raise ConfigError("model.arch", f"the {cls.name} task trains {', '.join(cls.families)}, got {quote(arch)}")
    if owner is not None and owner is not cls:
        raise ConfigError("model.arch", f"{arch} models are trained by the {owner.name} task, not {cls.name}; "
                          f"set task={owner.name}")
    return cls


def noise_task(cfg: RunConfig, option: str = "task") -> type[Task]:
    """The task of ``cfg`` if its generator draws from noise (sampling, interpolation); else a ConfigError."""
    cls = task_class(cfg)
    if not cls.from_noise:
        hint = f"; {cls.inference_hint}" if cls.inference_hint else ""
        raise ConfigError(option, f"a {cls.name} run's generator does not draw images from noise{hint}")
    return cls


def build_task(cfg: RunConfig, G: nn.Module, D: nn.Module, draws: Draws) -> Task:
    """The task of ``cfg`` over (possibly wrapped) ``G`` and ``D``, drawing from ``draws`` (rules checked)."""
    cls = task_class(cfg)
    cls.check_config(cfg)
    return cls(cfg, G, D, draws)
