"""Frechet distance between two Gaussians (the FID formula).

    d^2 = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2))

The trace of the matrix square root is computed without forming a
non-symmetric square root: ``C1 C2`` is similar to the symmetric positive
semi-definite ``M = S C2 S`` with ``S = C1^(1/2)`` (``C1 C2 = S (S C2 S) S^-1``
when ``S`` is invertible, and by continuity otherwise), so

    tr((C1 C2)^(1/2)) = sum_i sqrt(lambda_i(M)).

Both ``S`` and the eigenvalues of ``M`` come from symmetric eigen-solvers
(``numpy.linalg.eigh``), which are backward stable and return real values.
Eigenvalues that are slightly negative because of rounding (covariances
estimated from fewer samples than dimensions are singular) are clamped to 0.
This avoids the two failure modes of ``scipy.linalg.sqrtm(C1 @ C2)``: complex
output with spurious imaginary parts, and non-convergence on singular
products (which the usual "add eps to the diagonal and retry" patch hides by
changing the answer). All arithmetic is float64.

:func:`frechet_distance` runs in numpy on the host; :class:`FrechetReference`
and :func:`frechet_distance_torch` are the same computation in torch, on the
device that holds the statistics, with the square root of a fixed reference
covariance computed once and reused.
"""

from __future__ import annotations

import numpy as np
import torch


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix ``(D, D)``; negative eigenvalues -> 0."""
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """``tr((cov1 @ cov2)^(1/2))`` for symmetric PSD ``(D, D)`` matrices, float64."""
    s = _sqrt_psd(cov1)
    m = s @ cov2 @ s
    m = 0.5 * (m + m.T)  # remove rounding asymmetry before eigvalsh
    w = np.linalg.eigvalsh(m)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def _check(mu: np.ndarray, cov: np.ndarray, name: str) -> None:
    if mu.ndim != 1 or cov.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{name}: expected mean (D,) and covariance (D, D), "
                         f"got {mu.shape} and {cov.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError(f"{name}: mean or covariance contains NaN or Inf")


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Frechet distance between N(mu1, cov1) and N(mu2, cov2).

    Args:
        mu1, mu2: means, shape ``(D,)``.
        cov1, cov2: covariances, shape ``(D, D)``, symmetric PSD.

    Returns:
        The distance as a Python float (>= 0 up to rounding; tiny negative
        values from rounding are clamped to 0).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    _check(mu1, cov1, "first")
    _check(mu2, cov2, "second")
    if mu1.shape != mu2.shape:
        raise ValueError(f"dimension mismatch: {mu1.shape[0]} vs {mu2.shape[0]}")
    diff = mu1 - mu2
    d = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt_product(cov1, cov2)
    return max(float(d), 0.0)


def fid_from_features(feats1, feats2) -> float:
    """FID between two feature sets ``(N1, D)`` and ``(N2, D)`` (unbiased covariances)."""
    a = np.asarray(feats1, np.float64)
    b = np.asarray(feats2, np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


# ---------------------------------------------------------------- torch path
# The same formula in float64 torch, on whatever device the statistics live on.
# During training the real statistics never change, so their square root (the
# more expensive of the two eigen-decompositions) is computed once per process
# by :class:`FrechetReference` and each evaluation costs one ``S C2 S`` product
# and one ``eigvalsh``.

def _as_torch64(x, device: torch.device | None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device if device is not None else x.device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x, np.float64), device=device)


def _check_torch(mu: torch.Tensor, cov: torch.Tensor, name: str) -> None:
    if mu.ndim != 1 or tuple(cov.shape) != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{name}: expected mean (D,) and covariance (D, D), "
                         f"got {tuple(mu.shape)} and {tuple(cov.shape)}")
    # One host sync per call; the distance itself needs one anyway.
    if not bool(torch.isfinite(mu).all() & torch.isfinite(cov).all()):
        raise ValueError(f"{name}: mean or covariance contains NaN or Inf")


def sqrt_psd_torch(c: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD float64 tensor ``(D, D)``; negative eigenvalues -> 0."""
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0.0).sqrt()) @ v.T


class FrechetReference:
    """A fixed Gaussian ``N(mu, cov)`` (the real statistics) to measure distances from.

    The symmetric square root ``S = cov^(1/2)`` and ``tr(cov)`` are computed once,
    in float64 on ``device``; :meth:`distance` then needs one ``S C S`` product
    and one ``eigvalsh`` per call. ``FrechetReference(mu1, cov1).distance(mu2, cov2)``
    is the same computation as :func:`frechet_distance` (``S`` from the first
    covariance), done by torch instead of numpy; the two agree to rounding
    (within 1e-7 relative in the tests, singular covariances included).

    Args:
        mu: mean ``(D,)``, numpy or torch.
        cov: covariance ``(D, D)``, symmetric PSD.
        device: where to keep ``S`` and compute (default: ``cov``'s device, CPU for numpy).
    """

    def __init__(self, mu, cov, device: str | torch.device | None = None):
        dev = torch.device(device) if device is not None else None
        self.mu = _as_torch64(mu, dev)
        self.cov = _as_torch64(cov, self.mu.device)
        _check_torch(self.mu, self.cov, "first")
        self.device = self.mu.device
        self.sqrt_cov = sqrt_psd_torch(self.cov)
        self.trace = torch.trace(self.cov)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def trace_sqrt_product(self, cov) -> torch.Tensor:
        """``tr((cov_ref @ cov)^(1/2))`` as a 0-d float64 tensor on :attr:`device`."""
        s = self.sqrt_cov
        m = s @ _as_torch64(cov, self.device) @ s
        m = 0.5 * (m + m.T)  # remove rounding asymmetry before eigvalsh
        return torch.linalg.eigvalsh(m).clamp_min(0.0).sqrt().sum()

    def distance(self, mu, cov) -> float:
        """Squared Frechet distance to ``N(mu (D,), cov (D, D))`` as a Python float (clamped at 0)."""
        mu = _as_torch64(mu, self.device)
        cov = _as_torch64(cov, self.device)
        _check_torch(mu, cov, "second")
        if mu.shape != self.mu.shape:
            raise ValueError(f"dimension mismatch: {self.dim} vs {mu.shape[0]}")
        diff = self.mu - mu
        d = diff @ diff + self.trace + torch.trace(cov) - 2.0 * self.trace_sqrt_product(cov)
        return max(float(d), 0.0)


def frechet_distance_torch(mu1, cov1, mu2, cov2, device: str | torch.device | None = None) -> float:
    """:func:`frechet_distance` computed by torch in float64 on ``device`` (default: ``cov2``'s).

    Inputs are numpy arrays or tensors (``(D,)`` means, ``(D, D)`` covariances);
    they are moved to the device. Returns a Python float.
    """
    if device is None:
        device = cov2.device if isinstance(cov2, torch.Tensor) else "cpu"
    return FrechetReference(mu1, cov1, device).distance(mu2, cov2)
