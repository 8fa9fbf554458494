"""Frechet distance between two feature sets, in float64, the matrix square root through eigenvalues.

FD = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2) (Heusel et al. 2017; the same formula as torch-fidelity
0.4.0's ``fid_statistics_to_metric``, which takes the eigenvalues of S1 S2 instead of scipy's ``sqrtm``).

Here each covariance is written as S = F F^T (F = the centred features / sqrt(n - 1) when n <= d, else
V sqrt(L) from its eigendecomposition), so tr sqrt(S1 S2) is the sum of the square roots of the eigenvalues
of the symmetric PSD matrix G G^T, G = F1^T F2: an eigen-solve of min(n, d) x min(n, d) instead of a
non-symmetric d x d one (with N = 518 test cases and d = 2,048 that is 518 x 518), real by construction and
run on the GPU when there is one. Agrees with the scipy ``sqrtm`` route to ~1e-10 relative (tests).
"""

import numpy as np
import torch

from benchmark.core.errors import XbenchError


def _as_features(x, device) -> torch.Tensor:
    t = torch.as_tensor(x).to(device=device, dtype=torch.float64)
    if t.ndim != 2:
        raise XbenchError(f"features must be [N, d], not {tuple(t.shape)}")
    if t.shape[0] < 2:
        raise XbenchError(f"a Frechet distance needs at least 2 samples per set, got {t.shape[0]}")
    if not torch.isfinite(t).all():
        raise XbenchError("features contain NaN or inf; the feature extractor or its weights are broken")
    return t


def _factor(x: torch.Tensor) -> torch.Tensor:
    """F with F F^T = the sample covariance of x (rows are samples); [d, min(n, d)]."""
    n, d = x.shape
    c = x - x.mean(0, keepdim=True)
    if n <= d:
        return c.T / np.sqrt(n - 1)
    w, v = torch.linalg.eigh(c.T @ c / (n - 1))
    return v * w.clamp_min(0).sqrt()


def trace_sqrt_product(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """tr sqrt(S1 S2) for S1 = f1 f1^T, S2 = f2 f2^T, via the eigenvalues of the smaller Gram matrix."""
    g = f1.T @ f2
    gram = g @ g.T if g.shape[0] <= g.shape[1] else g.T @ g
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().sum()


def frechet_distance(features1, features2, device: str | torch.device = "cpu") -> float:
    """FD between two feature sets [N1, d] and [N2, d] (any float dtype; computed in float64)."""
    x1, x2 = _as_features(features1, device), _as_features(features2, device)
    if x1.shape[1] != x2.shape[1]:
        raise XbenchError(f"feature sets of different widths: {x1.shape[1]} and {x2.shape[1]}")
    f1, f2 = _factor(x1), _factor(x2)
    diff = x1.mean(0) - x2.mean(0)
    fd = diff @ diff + (f1 * f1).sum() + (f2 * f2).sum() - 2 * trace_sqrt_product(f1, f2)
    return float(fd)


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2, device: str | torch.device = "cpu") -> float:
    """FD from means and covariances (e.g. cached statistics): eigenvalues of S1 S2 in float64."""
    m1, m2 = (torch.as_tensor(m, dtype=torch.float64, device=device) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s, dtype=torch.float64, device=device) for s in (sigma1, sigma2))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.shape[0], m1.shape[0]):
        raise XbenchError(f"statistics of mismatched shapes: {tuple(m1.shape)}, {tuple(s1.shape)}")
    diff = m1 - m2
    tr_covmean = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)
