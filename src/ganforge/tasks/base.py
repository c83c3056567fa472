"""The task base class: what a task gives the training step, and what it tells everyone else.

The step (:mod:`ganforge.train.step`) runs ``n_dis`` discriminator phases and one
generator phase with explicit inputs; the adversarial D loss, regularisers,
updates, precision, fake reuse and batched D passes are the step's, so a task
never sees optimizers or execution switches. A task supplies:

* for training: :meth:`Task.d_batch` (real images and the conditioning ``cond``
  that G and D take: labels, masks, low-resolution inputs), :meth:`Task.g_batch`,
  :meth:`Task.generate`, :meth:`Task.augment` and :meth:`Task.g_loss`;
* for everything else (trainer, ``sample``, ``export``, ``serve``, ``eval``,
  the bench), class-level facts and methods: :attr:`Task.from_noise`,
  :meth:`Task.example_inputs` / :meth:`Task.export_module` (how G is called),
  :meth:`Task.load_size`, :meth:`Task.check_config`, :meth:`Task.preview` and,
  for periodic evaluation of a task that does not draw from noise,
  :meth:`Task.evaluate`.

Shapes: images are float (B, C, H, W) in [-1, 1]; labels (B,) int64; masks
(B, 1, H, W) float, 1 where pixels are missing. D maps ``(x, cond)`` to (B,) logits.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.errors import ConfigError
from ganforge.losses import get_loss
from ganforge.tasks.draws import Draws


@dataclass
class Batch:
    """Explicit inputs of one phase: real images (B, C, H, W) and the conditioning of G and D."""

    real: Tensor
    cond: Tensor | None = None  # labels (B,), masks (B, 1, H, W), ...; None when unconditional

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
    """

    d_has_batchnorm: bool
    graph_capturable: bool


@dataclass(frozen=True)
class TaskScores:
    """A task's own periodic evaluation: result keys and values, and which one decides the ``best`` checkpoint.

    ``better`` is ``"lower"`` or ``"higher"``, as metrics declare it in :func:`ganforge.metrics.register_metric`.
    """

    values: dict[str, Any]
    primary: str
    better: str = "lower"


def has_batchnorm(module: nn.Module) -> bool:
    """True if any layer normalises over the batch (BatchNorm of any kind, SyncBatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class Task:
    """Base class of every task (register a subclass with :func:`ganforge.tasks.register_task`).

    ``Task(cfg, G, D, draws)`` over possibly wrapped G and D. Subclasses implement
    :meth:`d_batch`, :meth:`generate` and :meth:`g_loss` (and :meth:`example_inputs`
    to be exported or served); the defaults below fit most tasks.
    """

    name: ClassVar[str] = ""  # set by register_task
    # G maps noise (and labels) to images: sampling, interpolation and FID of samples apply.
    from_noise: ClassVar[bool] = False
    # Model families this task trains (None: any family no other task claims).
    families: ClassVar[tuple[str, ...] | None] = None
    # G's inputs keep their height and width dynamic in an exported graph (image-to-image tasks).
    dynamic_size: ClassVar[bool] = False
    # Where to go instead when a command that draws from noise is given a run of this task.
    inference_hint: ClassVar[str] = ""

    def __init__(self, cfg: RunConfig, G: nn.Module, D: nn.Module, draws: Draws):
        self.cfg, self.G, self.D, self.draws = cfg, G, D, draws
        self.adversarial = get_loss(cfg.loss.name)
        self.capabilities = self.capabilities_for(cfg, D)

    # ------------------------------------------------------ class-level facts

    @classmethod
    def capabilities_for(cls, cfg: RunConfig, D: nn.Module) -> TaskCapabilities:
        """The capabilities a task of this class will have with ``D`` (known before it is built)."""
        return TaskCapabilities(d_has_batchnorm=has_batchnorm(D), graph_capturable=False)

    @classmethod
    def load_size(cls, cfg: RunConfig) -> int:
        """The image size to load training data at (larger than ``data.image_size`` when the task crops)."""
        return cfg.data.image_size

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Refuse, naming the key, what this task cannot do with ``cfg`` (called before any work)."""
        if cfg.train.eval_every and not cls.from_noise and cls.evaluate is Task.evaluate:
            raise ConfigError("train.eval_every", f"the {cls.name} task has no periodic evaluation; set it to 0")

    @classmethod
    def example_inputs(cls, cfg: RunConfig, batch: int, gen: torch.Generator,
                       size: int | None = None) -> dict[str, Tensor]:
        """Seeded inputs of G, by name, in call order (export traces and checks with them).

        ``size``: the image side for tasks with :attr:`dynamic_size` (default: the training size).
        """
        raise ConfigError("task", f"the {cls.name} task cannot be exported (no example inputs)")

    @classmethod
    def export_module(cls, G: nn.Module, cfg: RunConfig) -> nn.Module:
        """A module calling ``G`` with the inputs of :meth:`example_inputs` as positional arguments."""
        return G

    # ------------------------------------------------------------- training

    def d_batch(self, real: Tensor, labels: Tensor | None) -> Batch:
        """Inputs of one D phase from a real batch (B, C, H', W') and its labels (B,) or None."""
        raise NotImplementedError

    def g_batch(self, d_batch: Batch) -> Batch:
        """Inputs of the G phase, given the last D phase's batch (default: the same batch)."""
        return d_batch

    def generate(self, batch: Batch) -> Fake:
        """G's output for ``batch``; the caller decides whether it is differentiable."""
        raise NotImplementedError

    def augment(self, x: Tensor) -> Tensor:
        """What D sees of an image batch (the same transform family for real and fake; default none)."""
        return x

    def g_loss(self, batch: Batch, fake: Fake) -> tuple[Tensor, dict[str, Tensor]]:
        """G's loss (scalar float32) and 0-dim tensor logs; D is frozen by the caller.

        The default is the adversarial term alone (:meth:`adversarial_g_loss`).
        """
        return self.adversarial_g_loss(batch, self.D(self.augment(fake.images), batch.cond)), {}

    def adversarial_g_loss(self, batch: Batch, fake_logits: Tensor) -> Tensor:
        """The registered loss's G term for D's logits on the fakes (B,).

        A loss that compares with the real batch (``g_needs_real``: relativistic
        losses) gets D's logits on ``batch.real`` too, computed here without a
        graph (they are constants for G); other losses never pay for them.
        """
        real_logits = None
        if self.adversarial.g_needs_real:
            with torch.no_grad():
                real_logits = self.D(self.augment(batch.real), batch.cond)
        return self.adversarial.g_loss(fake_logits, real_logits)

    # ------------------------------------------------------ preview and eval

    def preview(self, model: nn.Module, dataset=None, autocast=contextlib.nullcontext
                ) -> tuple[Tensor, int | None]:
        """The run's preview grid drawn by ``model``: images (N, C, H, W) in [-1, 1] and images per row."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, device: torch.device) -> TaskScores:
        """Periodic evaluation of ``model`` (the EMA generator when there is one), for tasks not drawing
        from noise (those are scored by the metric registry: ``train.eval_metrics``)."""
        raise NotImplementedError
