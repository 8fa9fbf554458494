"""Bootstrap intervals over test cases and a tie-aware AUROC."""

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

from benchmark.core.errors import XbenchError


def bootstrap_indices(n: int, draws: int, seed: int) -> np.ndarray:
    """int [draws, n]: case indices drawn with replacement (the same draws serve every metric: paired)."""
    if n < 1:
        raise XbenchError("bootstrap over an empty set")
    return np.random.default_rng(seed).integers(0, n, size=(draws, n))


def percentile_interval(values: np.ndarray) -> list[float]:
    """The 95% percentile interval of bootstrap replicates (non-finite replicates are dropped)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise XbenchError("no finite bootstrap replicate: the metric is undefined on every resample")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def mean_interval(per_case: np.ndarray, index: np.ndarray) -> list[float]:
    """95% interval of the mean of per-case values (vectorised over the draws)."""
    return percentile_interval(np.asarray(per_case, dtype=np.float64)[index].mean(axis=1))


def statistic_interval(statistic: Callable[[np.ndarray], float], index: np.ndarray) -> list[float]:
    """95% interval of any statistic of a resample (called once per draw with that draw's case indices)."""
    return percentile_interval(np.array([statistic(row) for row in index]))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN without both classes."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean AUROC over the columns that have positives and negatives; NaN when none has."""
    aucs = [auroc(probs[:, k], labels[:, k]) for k in range(labels.shape[1])]
    aucs = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(aucs)) if aucs else float("nan")
