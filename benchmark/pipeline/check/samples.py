"""The ``metrics`` layer: a record's stored samples (``<record>.samples.npz``) re-evaluated with the frozen
judges and compared, value by value, with what the record holds.

Fixed images in, so nothing here depends on how training rounds on this CPU: the tolerance is the spread of
evaluation itself across kernel paths (about 1e-8 relative). ``vc_self`` is left out: it is the method's own
VCN, which only re-training has.
"""

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from benchmark.core.errors import XbenchError
from benchmark.data.datasets import get_dataset
from benchmark.pipeline.check import Comparison, Row, intra_op_threads, recorded_config, stale
from benchmark.pipeline.check.tolerances import Tolerances
from benchmark.pipeline.runner import evaluate_samples, load_samples, samples_path

LAYER = "metrics"
SCOPES = ("frontal", "lateral", "pair")
TRAINING_SIDE = ("vc_self",)  # needs the method's own networks: the end-to-end layer's


def flatten(metrics: dict) -> Iterator[tuple[str, str, float]]:
    """(view, name, value) for every number of a metrics block; an interval [lo, hi] is name[0], name[1]."""
    for view in SCOPES:
        for name, value in metrics.get(view, {}).items():
            if name.startswith(TRAINING_SIDE):
                continue
            if isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    yield view, f"{name}[{i}]", float(v)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield view, name, float(value)


def reevaluate(row: Row, metrics: Sequence[str] | None = None) -> dict:
    """The metrics block of ``row``'s first record, computed again from its stored samples (``metrics``: only
    these, for quick checks)."""
    path, recorded = row.first
    cfg = recorded_config(recorded)
    if metrics:
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, metrics=tuple(metrics)))
    ids, fake = load_samples(samples_path(path))
    dataset = get_dataset(cfg.dataset, cfg.data)
    test = dataset.images(dataset.splits().test)
    if ids != tuple(c.case_id for c in test.cases):
        raise XbenchError(f"{samples_path(path)}: its cases are not the test split of {cfg.dataset}; re-record it")
    return evaluate_samples(cfg, dataset, test, np.ascontiguousarray(fake))


def compare(layer: str, record: str, recorded: dict, now: dict, tolerances: Tolerances, only_now: bool) -> list:
    """Every number of ``recorded`` against ``now`` (``only_now``: just the names ``now`` has)."""
    new = {(view, name): value for view, name, value in flatten(now)}
    rows = []
    for view, name, old in flatten(recorded):
        if (view, name) not in new:
            if not only_now:
                rows.append(Comparison(layer, record, view, name, old, None, "", False, "missing in the re-run"))
            continue
        tol = tolerances.metric(name.split("[")[0].removesuffix("_n"))
        if name.endswith("_n") or "classes" in name:
            tol = dataclasses.replace(tol, abs=0.0, rel=0.0)  # counts: exactly
        value = new[(view, name)]
        rows.append(Comparison(layer, record, view, name, old, value, tol.describe(), tol.allows(old, value)))
    return rows


def check_row(row: Row, tolerances: Tolerances, metrics: Sequence[str] | None = None) -> list[Comparison]:
    path, recorded = row.first
    if (why := stale(LAYER, path, recorded)) is not None:
        return [why]
    if not samples_path(path).is_file():
        why = f"no stored samples ({samples_path(path).name}); re-record the row with `xbench run ... --record`"
        return [Comparison(LAYER, path.name, "-", "samples", None, None, "", False, why)]
    with intra_op_threads(int(recorded.versions.get("threads", torch.get_num_threads()))):  # the same reductions
        now = reevaluate(row, metrics)
    return compare(LAYER, path.name, recorded.metrics, now, tolerances, only_now=bool(metrics))
