"""Which task trains which model family: ``model.arch`` -> task class.

A new task is a class implementing :class:`~ganforge.tasks.base.Task` and one
entry here (or in :data:`TASKS` at import time of its own module).
"""

from __future__ import annotations

from torch import nn

from ganforge.config import RunConfig
from ganforge.tasks.inpainting import InpaintingTask
from ganforge.tasks.base import Task, TaskCapabilities
from ganforge.tasks.draws import Draws
from ganforge.tasks.generation import GenerationTask

TASKS: dict[str, type] = {"inpaint": InpaintingTask}  # model.arch -> task; every other arch generates
DEFAULT_TASK = GenerationTask


def build_task(cfg: RunConfig, G: nn.Module, D: nn.Module, draws: Draws) -> Task:
    """The task for ``cfg.model.arch`` over (possibly wrapped) ``G`` and ``D``, drawing from ``draws``."""
    return TASKS.get(cfg.model.arch, DEFAULT_TASK)(cfg, G, D, draws)


def task_capabilities(cfg: RunConfig, D: nn.Module) -> TaskCapabilities:
    """What the task of ``cfg`` allows with discriminator ``D``, before anything is wrapped or built."""
    return TASKS.get(cfg.model.arch, DEFAULT_TASK).capabilities_for(cfg, D)


def data_load_size(cfg: RunConfig) -> int:
    """The image size to load the data at: larger than ``data.image_size`` when the task crops."""
    cls = TASKS.get(cfg.model.arch, DEFAULT_TASK)
    return getattr(cls, "load_size", lambda c: c.data.image_size)(cfg)
