"""The random numbers of training steps: one generator, recordable for CUDA graphs.

Every draw a training step makes (noise, labels, interpolation weights of a
gradient penalty, masks, augmentation) comes from one :class:`torch.Generator`
per process, so a seeded run is reproducible and a checkpoint can save and
restore the stream exactly.

A CUDA graph replays kernels with fixed input buffers, so the draws of a
captured step cannot be made inside it. :class:`Draws` can *record* the kinds
and shapes of the draws of one eager step, then hand out preallocated buffers
in that order during capture and replay; :meth:`Draws.refill` fills them from
the same generator, in the same order, before each replay, so the stream of
numbers matches eager execution. Only :meth:`normal`, :meth:`integers` and
:meth:`uniform` are recorded; code that draws from :attr:`generator` directly
(augmentation, masks) makes a task not graph-capturable.
"""

from __future__ import annotations

import torch
from torch import Tensor

_DTYPES = {"normal": torch.float32, "uniform": torch.float32, "integers": torch.long}


class Draws:
    """Random draws of a training step. ``Draws(torch.Generator(device).manual_seed(s))``."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.device = generator.device
        self._mode = "off"  # off | record | replay
        self._calls: list[tuple[str, tuple[int, ...], int]] = []
        self._buffers: list[Tensor] = []
        self._pos = 0

    # ------------------------------------------------------------- draws

    def normal(self, *shape: int) -> Tensor:
        """Standard normal float32 noise of ``shape`` on the generator's device."""
        return self._take("normal", shape, 0)

    def uniform(self, *shape: int) -> Tensor:
        """U[0, 1) float32 of ``shape``."""
        return self._take("uniform", shape, 0)

    def integers(self, high: int, *shape: int) -> Tensor:
        """int64 uniform in ``[0, high)`` of ``shape``."""
        return self._take("integers", shape, high)

    def _fill(self, kind: str, shape: tuple[int, ...], high: int, out: Tensor | None = None) -> Tensor:
        where = {"out": out} if out is not None else {"device": self.device}
        if kind == "normal":
            return torch.randn(shape, generator=self.generator, **where)
        if kind == "uniform":
            return torch.rand(shape, generator=self.generator, **where)
        return torch.randint(0, high, shape, generator=self.generator, **where)

    def _take(self, kind: str, shape: tuple[int, ...], high: int) -> Tensor:
        if self._mode == "replay":
            buf = self._buffers[self._pos]
            self._pos += 1
            return buf
        if self._mode == "record":
            self._calls.append((kind, shape, high))
        return self._fill(kind, shape, high)

    # --------------------------------------------------------- recording

    def record(self) -> None:
        """Start noting the draws (of one step); a later :meth:`record` starts a new note."""
        self._mode, self._calls = "record", []

    def arm(self) -> None:
        """Switch to replay: one preallocated buffer per recorded draw, handed out in order."""
        self._buffers = [torch.empty(shape, device=self.device, dtype=_DTYPES[kind]) for kind, shape, _ in self._calls]
        self._mode, self._pos = "replay", 0

    def refill(self) -> None:
        """Draw the next step's values into the buffers, in the recorded order (before a replay)."""
        for (kind, shape, high), buf in zip(self._calls, self._buffers):
            self._fill(kind, shape, high, out=buf)
        self._pos = 0

    def stop(self) -> None:
        """Back to plain draws; buffers are released."""
        self._mode, self._calls, self._buffers, self._pos = "off", [], [], 0

    # ------------------------------------------------------------- state

    def get_state(self) -> Tensor:
        return self.generator.get_state()

    def set_state(self, state: Tensor) -> None:
        self.generator.set_state(state)

    def manual_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)
