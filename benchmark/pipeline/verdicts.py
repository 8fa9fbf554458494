"""The one comparison rule: is row A better than row B on a metric? Paired on test cases, aware of seeds.

Every run of a setting scores the same test cases, so two rows are compared by their difference, case for case.
Each row has S seeds; each seed's evidence (``metrics.evaluate``'s, kept beside its record) gives the metric on
B resamples of the test cases that every run shares: the bootstrap draws of the cases for means and AUROCs, the
half-sample plan for FID, the subsets for KID. For draw b the difference is resampled hierarchically:

1. the seeds of each row, drawn with replacement (their deviations from the row's mean scaled by
   sqrt(S / (S - 1)), so that three seeds do not understate the seed variance by a third);
2. the cases within a seed: draw b itself, the same cases for both rows (paired).

The draws' standard deviation is the difference's standard error. Three seeds leave its seed part uncertain,
so the interval is Student t, with Welch-Satterthwaite degrees of freedom from the seed parts (the case part
counts as known): a normal interval there rejects a true null far more often than 5 % (tests: cut the t and the
scaling and the false-positive rate of the synthetic null leaves its band). A difference is *separated* when its
95 % interval excludes 0 after Holm's correction over every comparison of its table. A row with one seed has
no seed variance to go on, and the seed variance is the larger part (vc: sd 0.078 over seeds against a case
half-width of 0.025), so it is never called separated: it is listed as "seed variance not measured".
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import stats

from benchmark.core.seeds import derive_seed
from metrics.stats import bootstrap_indices, macro_auroc, mean_interval

DRAWS = 400  # case resamples per comparison: enough for a standard error within ~4 %
LEVEL = 0.05  # family-wise, per table (Holm)
MEANS = ("ssim", "vc", "vc_deranged", "vc_gap", "copy_rate")  # per-case values; their mean is the metric
# Differences of two per-case metrics on the same cases, derived from a record (never recorded): vc_gap is how
# much more the judge finds one patient in a method's own pairs than in its deranged pairs (each frontal against
# another case's lateral). Raw vc cannot tell two views of one patient from one fixed pair drawn for every report
# (vc_deranged as high as vc); its gap can, so the VC claims are judged on it too.
DIFFERENCES = {"vc_gap": ("vc", "vc_deranged", "pair")}
# set metrics: the record's own paired replicates (one resampling plan per dataset, split and eval seed)
REPLICATES = (
    "fid_inception", "kid_inception", "precision_inception", "recall_inception", "fid_chestfilm", "kid_chestfilm",
)  # fmt: skip
AUROCS = ("finding_auc",)  # per-case scores and labels


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``metric (view): better - worse = diff [lo, hi]``, the 95 % interval, and Holm's adjusted p."""

    metric: str
    view: str
    better: str
    worse: str
    diff: float  # better minus worse, in the metric's units (negative for a lower-is-better metric)
    interval: tuple[float, float]
    p: float
    p_holm: float = 1.0
    seeds: tuple[int, int] = (0, 0)

    @property
    def separated(self) -> bool:
        return self.p_holm < LEVEL

    def text(self, digits: int = 3) -> str:
        label = self.metric if self.view == "pair" else f"{self.metric} ({self.view[0].upper()})"
        lo, hi = self.interval
        return (
            f"{label}: {self.better} - {self.worse} = {self.diff:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
            f" ({self.seeds[0]} v {self.seeds[1]} seeds, Holm p {self.p_holm:.2g})"
        )


def with_differences(metrics: dict, evidence: dict | None) -> tuple[dict, dict | None]:
    """A record's metrics and evidence with each of ``DIFFERENCES`` added where both terms are there: the value
    (the difference of the means is the mean of the per-case differences), its per-case evidence and, from it,
    its 95 % interval over cases (resampled by the verdicts' own draws)."""
    metrics, evidence = dict(metrics), None if evidence is None else dict(evidence)
    for name, (first, second, view) in DIFFERENCES.items():
        block = metrics.get(view, {})
        if block.get(first) is None or block.get(second) is None:
            continue
        block = metrics[view] = {**block, name: block[first] - block[second]}
        both = (evidence or {}).get(f"{first}/{view}"), (evidence or {}).get(f"{second}/{view}")
        if both[0] is None or both[1] is None:
            continue
        per_case = np.asarray(both[0], np.float64) - np.asarray(both[1], np.float64)
        evidence[f"{name}/{view}"] = per_case
        block[f"{name}_n"] = len(per_case)
        block[f"{name}_ci"], _ = mean_interval(per_case, _case_draws(len(per_case)))
    return metrics, evidence


def _case_draws(n: int) -> np.ndarray:
    """[DRAWS, n]: the case resamples every per-case comparison of ``n`` test cases uses."""
    return bootstrap_indices(n, DRAWS, derive_seed(0, "verdicts", n))


def has_evidence(metric: str) -> bool:
    return metric in MEANS + REPLICATES + AUROCS


def seed_draws(evidence: Sequence[dict], metric: str, view: str, value: Sequence[float]) -> np.ndarray | None:
    """float64 [S, B]: the metric of each seed (row) on the B shared resamples of the test cases (columns);
    None when some seed's evidence lacks it. ``value``: each seed's recorded value (centres the replicates)."""
    key = f"{metric}/{view}" if metric not in AUROCS else f"finding_scores/{view}"
    if not evidence or any(key not in e for e in evidence):
        return None
    if metric in REPLICATES:
        if len({e[key].shape for e in evidence}) != 1:
            return None
        # the replicates' deviations from their median, around each seed's value at N (metrics.stats)
        return np.stack([v + e[key] - np.median(e[key]) for e, v in zip(evidence, value)])
    index = _case_draws(len(evidence[0]["case_ids"]))
    if metric in MEANS:
        return np.stack([e[key][index].mean(axis=1) for e in evidence])
    labels = evidence[0][f"finding_labels/{view}"]
    return np.stack([[macro_auroc(e[key][i], labels[i])[0] for i in index] for e in evidence])


def compare(a: np.ndarray, b: np.ndarray, a_value, b_value, seed: int = 0) -> tuple[float, float, float, float]:
    """(difference a - b, its standard error, degrees of freedom, two-sided p) from two rows' seed draws
    ``a`` [S_a, B] and ``b`` [S_b, B] (paired column for column) and their seeds' values at N."""
    a_value, b_value = np.asarray(a_value, np.float64), np.asarray(b_value, np.float64)
    diff = float(a_value.mean() - b_value.mean())
    rng = np.random.default_rng(seed)
    se = float(np.nanstd(_hierarchical(a, rng) - _hierarchical(b, rng), ddof=1))
    df = _degrees_of_freedom(se, (a_value, b_value))
    if se == 0:
        return diff, 0.0, df, 0.0 if diff else 1.0
    return diff, se, df, _two_sided_p(abs(diff) / se, df)


def row_interval(draws: np.ndarray, value, seed: int = 0) -> tuple[float, float]:
    """The 95 % interval of one row's mean over its seeds (>= 2), by the rule ``compare`` applies to a
    difference: the hierarchical draws' standard error, Student t with the seed part's degrees of freedom."""
    value = np.asarray(value, np.float64)
    se = float(np.nanstd(_hierarchical(draws, np.random.default_rng(seed)), ddof=1))
    half = se * _critical(_degrees_of_freedom(se, (value,)))
    return float(value.mean() - half), float(value.mean() + half)


def _degrees_of_freedom(se: float, values: Sequence[np.ndarray]) -> float:
    """Welch-Satterthwaite: the seed parts var/S of each row carry the uncertainty (the case part counts as
    known); inf when no row varies over its seeds."""
    parts = [v.var(ddof=1) / len(v) for v in values]
    spare = sum(p**2 / (len(v) - 1) for p, v in zip(parts, values))
    return max(1.0, se**4 / spare) if spare > 0 else np.inf


def _two_sided_p(z: float, df: float) -> float:
    return float(2 * stats.t.sf(z, df))


def _critical(df: float) -> float:
    """The 97.5 % quantile of Student t with ``df`` degrees of freedom (the normal's at df = inf)."""
    return float(stats.t.ppf(0.975, df))


def _hierarchical(draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[B]: per column, the mean over seeds drawn with replacement, deviations scaled by sqrt(S / (S - 1))."""
    s = draws.shape[0]
    centre = draws.mean(axis=0)
    scaled = centre + np.sqrt(s / (s - 1)) * (draws - centre)
    pick = rng.integers(0, s, size=(s, draws.shape[1]))
    return np.take_along_axis(scaled, pick, axis=0).mean(axis=0)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error at any level): reject where adjusted < level."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


@dataclasses.dataclass(frozen=True)
class RowEvidence:
    """One measured row: its label, its seeds' recorded metric blocks and their evidence (one per seed)."""

    label: str
    metrics: tuple[dict, ...]
    evidence: tuple[dict, ...]


def table_verdicts(
    rows: Sequence[RowEvidence],
    columns: Sequence[tuple[str, str]],
    higher_is_better: dict[str, bool],
    cache: dict | None = None,
) -> tuple[list[Verdict], list[str]]:
    """(every comparison of two rows with >= 2 seeds on every (metric, view) column that has evidence and a
    direction in ``higher_is_better``, Holm over all of them; the labels of rows whose seed variance is not
    measured). ``cache``: a dict shared by the tables of one setting, so a row in several tables (XRayGAN full is
    in 1a, 1c and 2) has its seed draws computed once."""
    cache = {} if cache is None else cache
    unmeasured = [r.label for r in rows if len(r.evidence) < 2]
    ready = [r for r in rows if len(r.evidence) >= 2]
    found = []
    for metric, view in columns:
        if not has_evidence(metric) or metric not in higher_is_better:
            continue
        draws = {}
        for r in ready:
            values = [m.get(view, {}).get(metric) for m in r.metrics]
            if None in values:
                continue
            key = (r.label, metric, view)
            if key not in cache:
                cache[key] = seed_draws(r.evidence, metric, view, values)
            d = cache[key]
            if d is not None:
                draws[r.label] = (d, values)
        labels = list(draws)
        for i, first in enumerate(labels):
            for second in labels[i + 1 :]:
                (da, va), (db, vb) = draws[first], draws[second]
                diff, se, df, p = compare(da, db, va, vb)
                better, worse = (first, second) if (diff >= 0) == higher_is_better[metric] else (second, first)
                diff = diff if better == first else -diff
                half = se * _critical(df)
                seeds = (len(draws[better][1]), len(draws[worse][1]))
                found.append(Verdict(metric, view, better, worse, diff, (diff - half, diff + half), p, seeds=seeds))
    adjusted = holm([v.p for v in found]) if found else []
    return [dataclasses.replace(v, p_holm=float(q)) for v, q in zip(found, adjusted)], unmeasured
