"""What is being learned: the task base class, the registry and the built-in tasks.

A task turns data into the explicit inputs of the discriminator and generator
phases and computes the generator's loss; the training step
(:mod:`ganforge.train.step`) owns everything else. Built in: ``generation``
(:mod:`ganforge.tasks.generation`) and ``inpaint`` (:mod:`ganforge.tasks.inpainting`).
A new task is one module with a :class:`Task` subclass decorated with
:func:`register_task`; see :mod:`ganforge.tasks.base` for what it implements.
"""

from ganforge.tasks.base import Batch, TaskScores, Fake, Task, TaskCapabilities, has_batchnorm
from ganforge.tasks.generation import GenerationTask
from ganforge.tasks.inpainting import InpaintingTask
from ganforge.tasks.lookup import (TASKS, noise_task, register_task, task_class, task_names,
                                     unregister_task)

__all__ = ["TASKS", "Batch", "TaskScores", "Fake", "GenerationTask", "InpaintingTask", "Task", "TaskCapabilities",
           "has_batchnorm", "noise_task", "register_task", "task_class", "task_names", "unregister_task"]
