"""The ``end-to-end`` layer: each row re-trained from its lowest seed's configuration, its headline metrics
compared with the prediction interval of the row's recorded seeds.

On another CPU type (or kernel path) a trained result behaves like another seed: the rounding of the first
steps grows through training. So the question is whether the re-run is a plausible further seed of the row,
not whether it equals the record. The interval's level is family-wise over all end-to-end comparisons of one
check (Bonferroni), so that a correct xbench fails CI with probability at most 1 - level. A row with a single
recorded seed (the dummy floor, which trains nothing) is compared at the metrics layer's tolerance.
"""

from pathlib import Path

import torch

from benchmark.pipeline.check import Comparison, Row, intra_op_threads, recorded_config, stale
from benchmark.pipeline.check.tolerances import Tolerances, prediction_interval
from benchmark.pipeline.runner import run

LAYER = "end-to-end"


def headline(row: Row, tolerances: Tolerances) -> list[tuple[str, str]]:
    """(view, metric) pairs compared for ``row``: the configured headline metrics its first record holds."""
    metrics = row.records[0].metrics
    return [(v, m) for v, names in tolerances.end_to_end.metrics.items() for m in names if m in metrics.get(v, {})]


def compare(row: Row, now: dict, tolerances: Tolerances, comparisons: int) -> list[Comparison]:
    path, first = row.first
    alpha = (1 - tolerances.end_to_end.level) / max(1, comparisons)
    out = []
    for view, name in headline(row, tolerances):
        seeds = [r.metrics[view][name] for r in row.records if name in r.metrics.get(view, {})]
        value = now.get(view, {}).get(name)
        if value is None:
            out.append(Comparison(LAYER, path.name, view, name, seeds[0], None, "", False, "missing in the re-run"))
            continue
        if len(seeds) >= 2:
            lo, hi = prediction_interval(seeds, alpha)
            allowed, ok = f"[{lo:.4g}, {hi:.4g}] ({len(seeds)} seeds)", lo <= value <= hi
        else:
            tol = tolerances.metric(name)
            allowed, ok = f"{tol.describe()} (1 seed)", tol.allows(seeds[0], value)
        out.append(Comparison(LAYER, path.name, view, name, sum(seeds) / len(seeds), value, allowed, ok))
        n_key = f"{name}_n"
        if n_key in first.metrics.get(view, {}):
            n_old, n_new = first.metrics[view][n_key], now.get(view, {}).get(n_key)
            out.append(Comparison(LAYER, path.name, view, n_key, n_old, n_new, "exact", n_old == n_new))
    return out


def check_row(row: Row, tolerances: Tolerances, runs_dir: Path, comparisons: int) -> list[Comparison]:
    path, recorded = row.first
    if (why := stale(LAYER, path, recorded)) is not None:
        return [why]
    # The recording's intra-op thread count: float reductions split differently otherwise.
    with intra_op_threads(int(recorded.versions.get("threads", torch.get_num_threads()))):
        now = run(recorded_config(recorded), runs_dir=runs_dir)
    return compare(row, now.metrics, tolerances, comparisons)
