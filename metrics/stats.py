"""Intervals over test cases and a tie-aware AUROC; every dropped draw or class is counted, never silent.

Two resampling schemes, both over test cases (generated and real images of a case stay together):

- means of per-case values (SSIM, VC, AUROCs): the percentile bootstrap, cases drawn with replacement;
- set distances (FID, KID), which duplicated samples bias upward (a duplicate shrinks a set's spread: 59 % of
  with-replacement FID draws fell above the point estimate): half-sampling, ``HALF`` of the cases drawn
  without replacement per draw. A half-sample mean has the variance of a full-sample mean (sigma^2/(N/2) times
  the finite-population factor 1/2), so the draws' spread is the spread at N; their centre is the statistic at
  N/2, biased differently from the value at N, so the interval is the draws' 2.5-97.5 % deviations from their
  median placed around the value at N: ``[v - (median - q2.5), v + (q97.5 - median)]``.
"""

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from benchmark.core.errors import XbenchError

HALF = 0.5  # the fraction of the test cases in each half-sample


def bootstrap_indices(n: int, draws: int, seed: int) -> np.ndarray:
    """int [draws, n]: case indices drawn with replacement (the same draws serve every metric: paired)."""
    if n < 1:
        raise XbenchError("bootstrap over an empty set")
    return np.random.default_rng(seed).integers(0, n, size=(draws, n))


def half_sample_indices(n: int, draws: int, seed: int) -> np.ndarray:
    """int [draws, floor(n * HALF)]: case indices drawn without replacement, one row per draw."""
    m = int(n * HALF)
    if m < 2:
        raise XbenchError(f"half-sampling needs at least 4 cases, got {n}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n)[:m] for _ in range(draws)])


def _finite(values) -> tuple[np.ndarray, int]:
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    if not keep.any():
        raise XbenchError("no finite resampled value: the metric is undefined on every resample")
    return values[keep], int((~keep).sum())


def percentile_interval(values) -> tuple[list[float], int]:
    """(95 % percentile interval of the replicates, how many non-finite replicates were left out)."""
    finite, dropped = _finite(values)
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return [float(lo), float(hi)], dropped


def centred_interval(point: float, values) -> tuple[list[float], int]:
    """(the replicates' 2.5-97.5 % deviations from their median around ``point``, non-finite replicates left out)."""
    finite, dropped = _finite(values)
    lo, med, hi = np.percentile(finite, [2.5, 50, 97.5])
    return [float(point - (med - lo)), float(point + (hi - med))], dropped


def mean_interval(per_case: np.ndarray, index: np.ndarray) -> tuple[list[float], int]:
    """95 % interval of the mean of per-case values (vectorised over the draws)."""
    return percentile_interval(np.asarray(per_case, dtype=np.float64)[index].mean(axis=1))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN without both classes."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(probs: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """(mean AUROC over the columns with positives and negatives, how many columns had not); NaN when none has."""
    aucs = np.array([auroc(probs[:, k], labels[:, k]) for k in range(labels.shape[1])])
    finite = aucs[np.isfinite(aucs)]
    return (float(finite.mean()) if finite.size else float("nan")), int(aucs.size - finite.size)


def resampled(
    statistic: Callable[[np.ndarray], float | tuple[float, int]], index: np.ndarray
) -> tuple[np.ndarray, int]:
    """(the statistic of every draw, the classes it left out summed over the draws)."""
    values, left_out = [], 0
    for row in index:
        out = statistic(row)
        value, dropped = out if isinstance(out, tuple) else (out, 0)
        values.append(value)
        left_out += dropped
    return np.array(values, dtype=np.float64), left_out
