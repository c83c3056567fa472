"""The task protocol: what a task gives the training step.

The step (:mod:`ganforge.train.step`) runs ``n_dis`` discriminator phases and one
generator phase with explicit inputs. A task supplies those inputs and the parts
of the objective that are its own:

* :meth:`Task.d_batch` turns a real batch (and labels) into a :class:`Batch`:
  the real images D sees and the conditioning ``cond`` that both G and D take
  (class labels for conditional generation, masks for inpainting);
* :meth:`Task.g_batch` gives the generator phase its batch (fresh labels, or the
  last D batch when the generator needs the real images);
* :meth:`Task.generate` runs G on a batch; :meth:`Task.augment` is applied to
  every image D scores (real and fake alike); :meth:`Task.g_loss` is the
  generator's loss given its fakes.

The adversarial D loss, regularisers (:mod:`ganforge.regularizers`), updates,
precision, fake reuse and batched D passes belong to the step, so a task never
sees optimizers or execution switches. :class:`TaskCapabilities` tell the
execution plan (:mod:`ganforge.train.plan`) what a task allows.

Shapes: images are float (B, C, H, W) in [-1, 1]; labels (B,) int64; masks
(B, 1, H, W) float, 1 where pixels are missing. D maps ``(x, cond)`` to (B,) logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@dataclass
class Batch:
    """Explicit inputs of one phase: real images (B, C, H, W) and the conditioning of G and D."""

    real: Tensor
    cond: Tensor | None = None  # labels (B,) or masks (B, 1, H, W); None when unconditional

    @property
    def size(self) -> int:
        return self.real.shape[0]


@dataclass
class Fake:
    """What G produced for a batch: ``images`` (B, C, H, W) are what D scores; ``extras`` are task outputs."""

    images: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskCapabilities:
    """What a task allows the execution plan to do.

    ``d_has_batchnorm``: D normalises over the batch, so real and fake images
    must be scored in separate passes (one pass would mix their statistics).
    ``graph_capturable``: every draw goes through :class:`~ganforge.tasks.draws.Draws`'
    recorded kinds and nothing reads values on the host, so a step can be a CUDA graph.
    ``preview``: G does not map noise to images, so the task draws its own preview grid.
    """

    d_has_batchnorm: bool
    graph_capturable: bool
    preview: bool = False


@runtime_checkable
class Task(Protocol):
    """The protocol every task implements (see the module docstring)."""

    G: nn.Module
    D: nn.Module
    capabilities: TaskCapabilities

    @classmethod
    def capabilities_for(cls, cfg, D: nn.Module) -> TaskCapabilities:
        """The capabilities a task of this class will have with ``D`` (known before it is built)."""

    def d_batch(self, real: Tensor, labels: Tensor | None) -> Batch:
        """Inputs of one D phase from a real batch (B, C, H', W') and its labels (B,) or None."""

    def g_batch(self, d_batch: Batch) -> Batch:
        """Inputs of the G phase, given the last D phase's batch (used when fakes are not reused)."""

    def generate(self, batch: Batch) -> Fake:
        """G's output for ``batch``; the caller decides whether it is differentiable."""

    def augment(self, x: Tensor) -> Tensor:
        """What D sees of an image batch (the same transform family for real and fake)."""

    def g_loss(self, batch: Batch, fake: Fake) -> tuple[Tensor, dict[str, Tensor]]:
        """G's loss (scalar float32) and 0-dim tensor logs; D is frozen by the caller."""


class PreviewTask(Task, Protocol):
    """A task whose capabilities say ``preview``: it writes the run's preview grids itself."""

    def preview(self, model: nn.Module, path: str | Path, dataset=None) -> Path:
        """Write a grid showing ``model`` (in eval mode) at work; returns the PNG path."""


def has_batchnorm(module: nn.Module) -> bool:
    """True if any layer normalises over the batch (BatchNorm of any kind, SyncBatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
