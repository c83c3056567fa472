"""Signs of failure that raise no error: D winning outright, samples losing diversity."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class CollapseMonitor:
    """Warnings for signs of failure that do not raise errors: D winning outright, samples losing diversity."""

    def __init__(self, patience: int = 200):
        self.patience = patience
        self.d_zero_since: int | None = None
        self.best_diversity = 0.0
        self.warned: set[str] = set()

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(message)

    def check_losses(self, step: int, logs: dict, logistic: bool) -> None:
        # A logistic D loss near 0 means D separates perfectly and G's gradients vanish.
        pinned = logistic and logs.get("d_loss", 1.0) < 1e-3
        if not pinned:
            self.d_zero_since = None
            return
        self.d_zero_since = step if self.d_zero_since is None else self.d_zero_since
        if step - self.d_zero_since >= self.patience:
            self._warn("d_zero", f"step {step}: D loss has been ~0 for {self.patience} steps; "
                       "G receives no signal (possible collapse)")

    def check_diversity(self, step: int, images: torch.Tensor) -> float:
        """Mean pairwise L2 distance of the fixed-noise samples; warns when it falls below 25% of its best."""
        flat = images.float().flatten(1)
        if flat.shape[0] < 2:
            return 0.0
        diversity = torch.pdist(flat).mean().item() / flat.shape[1] ** 0.5
        self.best_diversity = max(self.best_diversity, diversity)
        if diversity < 0.25 * self.best_diversity:
            self._warn("diversity", f"step {step}: sample diversity fell to {diversity:.3f} "
                       f"(best {self.best_diversity:.3f}): possible mode collapse")
        return diversity
