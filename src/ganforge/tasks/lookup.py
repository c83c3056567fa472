"""Tasks by name: the ``task:`` config key chooses one.

A task registers itself with :func:`register_task` (from its own module, a
plug-in or a test); :func:`task_class` is the one lookup every consumer uses.
Configs written before the ``task:`` key existed are migrated by
:func:`ganforge.config.migrate` (``model.arch: inpaint`` meant inpainting).
"""

from __future__ import annotations

from typing import Callable

from ganforge.config import RunConfig
from ganforge.errors import ConfigError, quote
from ganforge.registry import Registry
from ganforge.tasks.base import Task

TASKS: Registry[type[Task]] = Registry("task", "task")
task_names = TASKS.names
unregister_task = TASKS.remove


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: register a :class:`~ganforge.tasks.base.Task` subclass as ``task: name``."""
    TASKS.check_name(name)

    def decorate(cls: type[Task]) -> type[Task]:
        TASKS.add(name, cls)
        cls.name = name
        return cls

    return decorate


def task_class(cfg: RunConfig) -> type[Task]:
    """The task class of ``cfg.task``, checked against ``cfg.model.arch``.

    Training also asks the task's own rules (:meth:`~ganforge.tasks.base.Task.check_config`).

    Raises:
        ConfigError: naming ``task`` (unknown) or ``model.arch`` (a family the task does not train).
    """
    cls = TASKS.get_or_error(cfg.task)
    arch = cfg.model.arch  # a registered family: the config's validation asked the model registry
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
        raise ConfigError(option, f"the {cls.name} task's generator does not draw images from noise{hint}")
    return cls
