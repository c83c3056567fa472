"""Streaming first and second moments of feature vectors.

:class:`FeatureStats` accumulates the count, the sum and the sum of outer
products of ``(N, D)`` feature batches in float64 torch, on the device the
features come from, so memory is ``O(D^2)`` whatever the number of images and
nothing goes to the host per batch. Optionally the first ``max_items`` raw
features are kept as well (float32, on the host), which KID and
precision/recall need; FID needs none.

To limit cancellation in ``cov = (S2 - n mu mu^T) / (n - 1)`` the sums are
taken of ``x - shift``, where ``shift`` is the mean of the first batch: the
covariance is shift invariant, and the shifted values are centred, so the two
terms no longer nearly cancel.

Statistics are saved to ``.npz`` (``allow_pickle=False``) with a JSON
metadata string, so a cache can check what a file was computed from. When every
feature is kept and there are fewer of them than dimensions, the file holds the
features instead of the ``D x D`` sum of outer products (1.6 MB instead of 34 MB for
200 Inception features), and the covariance is computed from the kept features (in
float64; they are exact copies of what was summed) both before saving and after
loading, so a statistic read from the cache gives the same FID to the last bit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganforge.atomic import write_file
from ganforge.errors import DataError

FORMAT_VERSION = 1


def _as_torch64(features) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        x = features.detach().to(torch.float64)
    else:
        x = torch.from_numpy(np.asarray(features, dtype=np.float64))
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {tuple(x.shape)}")
    return x


class FeatureStats:
    """Running mean/covariance of ``(N, D)`` features, plus up to ``max_items`` raw rows.

    The sums live on the device of the first batch appended (later batches are
    moved there), so features computed on an accelerator never travel to the
    host one batch at a time; :meth:`mean` and :meth:`mean_cov` still return
    numpy, :meth:`mean_cov_torch` returns tensors on that device.

    NaN or Inf in a CPU batch raises in :meth:`append`; for batches on another
    device the check is deferred to the first read (:meth:`mean`,
    :meth:`mean_cov`, :meth:`save`), so that appending never waits for the device.

    Args:
        max_items: how many raw feature rows to keep (the first ones seen);
            0 keeps none.
        metadata: free-form JSON-serialisable description, saved with the stats.
    """

    def __init__(self, max_items: int = 0, metadata: dict[str, Any] | None = None):
        self.max_items = int(max_items)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.count = 0
        self.dim: int | None = None
        self._shift: torch.Tensor | None = None   # (D,) float64
        self._sum: torch.Tensor | None = None     # (D,) sum of x - shift
        self._outer: torch.Tensor | None = None   # (D, D) sum of (x - shift)(x - shift)^T
        self._finite: torch.Tensor | None = None  # 0-d bool on the device: deferred NaN/Inf check
        self._kept: list[np.ndarray] = []         # float32 chunks, total rows <= max_items
        self._n_kept = 0

    @property
    def device(self) -> torch.device | None:
        """Where the sums are accumulated (None before the first batch)."""
        return None if self._shift is None else self._shift.device

    def append(self, features) -> None:
        """Add a batch ``(B, D)`` (torch on any device, or numpy)."""
        x = _as_torch64(features)
        if x.shape[0] == 0:
            return
        if self.dim is None:
            self.dim = x.shape[1]
            self._shift = x.mean(dim=0)
            self._sum = torch.zeros_like(self._shift)
            self._outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=x.device)
        elif x.shape[1] != self.dim:
            raise ValueError(f"feature dimension changed from {self.dim} to {x.shape[1]}")
        x = x.to(self._shift.device)
        finite = torch.isfinite(x).all()
        if x.device.type == "cpu":
            if not bool(finite):
                raise ValueError("features contain NaN or Inf")
        else:
            self._finite = finite if self._finite is None else self._finite & finite
        xc = x - self._shift
        self._sum += xc.sum(dim=0)
        self._outer.addmm_(xc.T, xc)
        self.count += x.shape[0]
        if self._n_kept < self.max_items:
            take = x[: self.max_items - self._n_kept].float().cpu().numpy()
            self._kept.append(take)
            self._n_kept += take.shape[0]

    def mean(self) -> np.ndarray:
        """Mean ``(D,)`` float64."""
        self._require(1)
        return (self._shift + self._sum / self.count).cpu().numpy()

    def mean_cov_torch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(D,)`` and unbiased covariance ``(D, D)``, float64 tensors on :attr:`device`."""
        self._require(2)
        m = self._sum / self.count
        outer = self._outer
        if self._from_features():
            # The same products the file rebuilds them from: a cached statistic gives the same number to the bit.
            xc = torch.from_numpy(self.features).to(self._shift.device, torch.float64) - self._shift
            outer = xc.T @ xc
        cov = (outer - self.count * torch.outer(m, m)) / (self.count - 1)
        cov = 0.5 * (cov + cov.T)  # exact symmetry for the eigen-solvers downstream
        return self._shift + m, cov

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (divisor ``n - 1``), float64 numpy."""
        mu, cov = self.mean_cov_torch()
        return mu.cpu().numpy(), cov.cpu().numpy()

    @property
    def features(self) -> np.ndarray | None:
        """Kept raw features ``(min(count, max_items), D)`` float32, or None if none kept."""
        if not self._kept:
            return None
        if len(self._kept) > 1:
            self._kept = [np.concatenate(self._kept)]
        return self._kept[0]

    def _from_features(self) -> bool:
        """Every feature is kept and they are fewer than the dimensions: files store them, not the products."""
        return self._n_kept == self.count and self.count < (self.dim or 0)

    def _require(self, n: int) -> None:
        if self.count < n:
            raise ValueError(f"need at least {n} feature vectors, have {self.count}")
        if self._finite is not None and not bool(self._finite):
            raise ValueError("features contain NaN or Inf")

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (``.npz``); the parent directory is created. Returns the path.

        The file is written to a temporary name and renamed, so a concurrent
        reader never sees half a file.
        """
        self._require(1)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "format_version": np.array(FORMAT_VERSION),
            "count": np.array(self.count, dtype=np.int64),
            "max_items": np.array(self.max_items, dtype=np.int64),
            "shift": self._shift.cpu().numpy(), "sum": self._sum.cpu().numpy(),
            "metadata": np.array(json.dumps(self.metadata, sort_keys=True)),
        }
        if self.features is not None:
            arrays["features"] = self.features
        if not self._from_features():
            arrays["outer"] = self._outer.cpu().numpy()
        return write_file(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        """Read a file written by :meth:`save`.

        Raises:
            DataError: the file is missing, not an npz, or lacks fields.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format_version"]) != FORMAT_VERSION:
                    raise DataError(path, f"unsupported stats format {int(z['format_version'])}")
                st = cls(int(z["max_items"]), json.loads(str(z["metadata"])))
                st.count = int(z["count"])
                st._shift, st._sum = (torch.from_numpy(np.asarray(z[k], np.float64)) for k in ("shift", "sum"))
                st.dim = st._shift.shape[0]
                if "features" in z.files:
                    st._kept = [z["features"].astype(np.float32)]
                    st._n_kept = st._kept[0].shape[0]
                if "outer" in z.files:
                    st._outer = torch.from_numpy(np.asarray(z["outer"], np.float64))
                elif st._n_kept == st.count:
                    xc = torch.from_numpy(st._kept[0]).double() - st._shift
                    st._outer = xc.T @ xc
                else:
                    raise KeyError("outer")
        except DataError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(path, f"cannot read feature statistics: {exc}") from exc
        return st

    def __repr__(self) -> str:
        return (f"FeatureStats(count={self.count}, dim={self.dim}, "
                f"kept={self._n_kept}/{self.max_items})")
