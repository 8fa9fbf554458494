"""Frechet distance between two feature sets, in float64, the matrix square root through eigenvalues.

FD = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2) (Heusel et al. 2017; the same formula as torch-fidelity
0.4.0's ``fid_statistics_to_metric``, which takes the eigenvalues of S1 S2 instead of scipy's ``sqrtm``).

Here each covariance is written as S = F F^T (F = the centred features / sqrt(n - 1) when n <= d, else
V sqrt(L) from its eigendecomposition), so tr sqrt(S1 S2) is the sum of the square roots of the eigenvalues
of the symmetric PSD matrix G G^T, G = F1^T F2: an eigen-solve of min(n, d) x min(n, d) instead of a
non-symmetric d x d one (with N = 518 test cases and d = 2,048 that is 518 x 518), real by construction and
run on the GPU when there is one. Agrees with the scipy ``sqrtm`` route to ~1e-10 relative (tests).

Resampled FIDs (``frechet_replicates``: the same case subsets of both sets, one row of an index per draw) go
through the Gram matrices instead: with X1c, X2c the centred features of a subset of m cases,
tr sqrt(S1 S2) = || X1c X2c^T ||_* / (m - 1), and X1c X2c^T = H K12[I, I] H, where K12 = X1 X2^T over all N
cases is formed once and H centres an m x m matrix. A draw then costs one m x m symmetric eigen-solve,
and the means and traces come from K11, K22 and K12 alike, not a d-wide product per draw.
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


def frechet_replicates(features1, features2, index, device: str | torch.device = "cpu") -> np.ndarray:
    """FD of ``features1[i]`` against ``features2[i]`` for every row ``i`` of ``index`` (int [B, m]: case indices
    shared by both sets, paired), float64 [B]. Equal to ``frechet_distance`` on each subset (tests: 1e-6)."""
    x1, x2 = _as_features(features1, device), _as_features(features2, device)
    if x1.shape != x2.shape:
        raise XbenchError(f"paired replicates need two feature sets of one shape: {tuple(x1.shape)}, {tuple(x2.shape)}")
    index = torch.as_tensor(np.asarray(index), device=x1.device, dtype=torch.long)
    if index.ndim != 2 or index.shape[1] < 2:
        raise XbenchError(f"a replicate index must be [draws, m >= 2], not {tuple(index.shape)}")
    m = index.shape[1]
    grams = (x1 @ x1.T, x2 @ x2.T, x1 @ x2.T)
    out = []
    for rows in index.split(64):  # [b, m] draws at a time: three [b, m, m] blocks stay small
        k11, k22, k12 = (g[rows[:, :, None], rows[:, None, :]] for g in grams)
        mean_gap = _mean(k11) + _mean(k22) - 2 * _mean(k12)  # |mu1 - mu2|^2
        traces = (_centre(k11).diagonal(dim1=1, dim2=2).sum(1) + _centre(k22).diagonal(dim1=1, dim2=2).sum(1)) / (m - 1)
        c12 = _centre(k12)  # its nuclear norm through the eigenvalues of C C^T: faster than an SVD, as above
        nuclear = torch.linalg.eigvalsh(c12 @ c12.mT).clamp_min(0).sqrt().sum(1) / (m - 1)  # tr sqrt(S1 S2)
        out.append(mean_gap + traces - 2 * nuclear)
    return torch.cat(out).cpu().numpy()


def _mean(k: torch.Tensor) -> torch.Tensor:
    return k.mean(dim=(1, 2))


def _centre(k: torch.Tensor) -> torch.Tensor:
    """H K H for a batch of square matrices (H = I - 11^T / m): both sides' features centred on their mean."""
    return k - k.mean(1, keepdim=True) - k.mean(2, keepdim=True) + k.mean(dim=(1, 2), keepdim=True)


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2, device: str | torch.device = "cpu") -> float:
    """FD from means and covariances (e.g. cached statistics): eigenvalues of S1 S2 in float64."""
    m1, m2 = (torch.as_tensor(m, dtype=torch.float64, device=device) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s, dtype=torch.float64, device=device) for s in (sigma1, sigma2))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.shape[0], m1.shape[0]):
        raise XbenchError(f"statistics of mismatched shapes: {tuple(m1.shape)}, {tuple(s1.shape)}")
    diff = m1 - m2
    tr_covmean = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean)
