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
"""

from __future__ import annotations

import numpy as np


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
