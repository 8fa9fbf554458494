"""``xbench check``: is this machine's xbench the one that made the committed records? Three layers, cheapest
first, each with a tolerance measured across kernel paths (``leaderboards/tolerances.toml``):

- ``metrics``: a record's stored samples re-evaluated by the frozen judges (``samples.py``). Evaluation of
  fixed images is the same to ~1e-6 on any CPU, so any change to a metric, a judge or the data is caught.
- ``steps``: each trained row's first updates on a fixed batch, loss by loss (``steps.py``), before rounding
  differences grow: a changed loss, optimiser or data path is caught on any CPU.
- ``end-to-end``: each row re-trained from its seed-0 configuration (``end_to_end.py``; as many rows at once as
  the cores hold at the recordings' thread counts, each in its own process), passing inside the
  prediction interval of the row's recorded seeds: on another CPU a trained result behaves like another seed.

A record made under another metric protocol or configuration schema is stale: the check fails without
running it. Training is bit-identical only on the same CPU type, torch build and thread count; the layers
above are what holds elsewhere.
"""

import contextlib
import dataclasses
import functools
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from benchmark.core.errors import XbenchError, unknown_name
from benchmark.pipeline.check.tolerances import LAYERS, Tolerances, load_tolerances
from benchmark.pipeline.config import SETTINGS, RunConfig, config_from_dict
from benchmark.pipeline.results import RunResult, load_result
from metrics import PROTOCOL


@dataclasses.dataclass(frozen=True)
class Comparison:
    layer: str
    record: str
    view: str
    metric: str
    recorded: float | None
    now: float | None
    allowed: str  # what passes, in words: "±1e-06", "[0.12, 0.31] (3 seeds)"
    ok: bool
    why: str = ""

    @property
    def stale(self) -> bool:
        """The record could not be compared at all (another protocol or config schema): re-record it."""
        return self.metric in ("protocol", "config")


@dataclasses.dataclass(frozen=True)
class Row:
    """One leaderboard row of a setting: its records, one per seed, lowest seed first."""

    paths: tuple[Path, ...]
    records: tuple[RunResult, ...]

    @property
    def name(self) -> str:
        r = self.records[0]
        return f"{r.method}_{r.variant}_{r.setting}"

    @property
    def machine(self) -> str:
        """The CPU model and torch kernel path the row's first record was made on."""
        v = self.records[0].versions
        return (
            f"{v.get('cpu', 'unknown CPU')}, {v.get('cpu_capability', 'unknown kernels')}, {v.get('threads')} threads"
        )

    @property
    def first(self) -> tuple[Path, RunResult]:
        return self.paths[0], self.records[0]

    @property
    def recorded_seconds(self) -> float:
        """The first record's wall time (fit + generate + evaluate): the cost of re-running the row."""
        return float(sum(self.records[0].timing_s.values()))


def rows_of(paths: Sequence[Path]) -> list[Row]:
    loaded = sorted(((load_result(p), p) for p in paths), key=lambda rp: (rp[0].method, rp[0].variant, rp[0].seed))
    rows = []
    for _, group in itertools.groupby(loaded, key=lambda rp: (rp[0].method, rp[0].variant, rp[0].setting)):
        group = list(group)
        rows.append(Row(tuple(p for _, p in group), tuple(r for r, _ in group)))
    return rows


def stale(layer: str, path: Path, recorded: RunResult) -> Comparison | None:
    """Why ``recorded`` cannot be compared with this xbench (another metric protocol or config schema), or None."""
    protocol = recorded.metrics.get("provenance", {}).get("protocol", {}).get("metrics", "xbench-metrics-1")
    if protocol != PROTOCOL:  # its numbers were measured by other judges or recipes: comparing them means nothing
        why = (
            f"stale protocol, re-record: recorded under metric protocol {protocol}, this xbench measures "
            f"{PROTOCOL}; re-record with `xbench run ... --record`"
        )
        return Comparison(layer, path.name, "-", "protocol", None, None, "", False, why)
    try:
        cfg = config_from_dict(recorded.config)
    except XbenchError as err:  # a setting it holds was removed since
        why = f"its configuration no longer loads ({err}); re-evaluate (scripts/reevaluate_records.py) or re-record"
        return Comparison(layer, path.name, "-", "config", None, None, "", False, why)
    if cfg.config_hash != recorded.config_hash:  # a setting was added, renamed or removed since
        why = (
            f"the configuration schema changed since recording ({recorded.config_hash} -> {cfg.config_hash}); "
            "re-record with `xbench run ... --record`"
        )
        return Comparison(layer, path.name, "-", "config", None, None, "", False, why)
    return None


def recorded_config(recorded: RunResult) -> RunConfig:
    return config_from_dict(recorded.config)


@contextlib.contextmanager
def intra_op_threads(threads: int):
    """torch's intra-op thread count set to ``threads`` (a recording's: float reductions split by thread) while a
    layer checks one row, and the caller's given back after, so that checking a row leaves its process as it was."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_records(
    paths: list[Path] | None,
    runs_dir: Path,
    leaderboards: Path,
    *,
    setting: str = "tiny",
    layers: Sequence[str] = LAYERS,
    tolerances: Tolerances | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Comparison], list[Row]]:
    """Check ``paths`` (default: every committed record of ``setting`` under ``leaderboards``) at ``layers``;
    (comparisons, rows checked). A row is checked once, through its lowest seed; its other seeds give the end-to-end
    layer its interval. CI checks the tiny records; the small ones take hours on a CPU and are checked by hand.
    ``log`` gets one line per record and layer as it finishes."""
    from benchmark.pipeline.check import end_to_end, samples, steps

    if setting not in SETTINGS:
        raise unknown_name("config", setting, SETTINGS)
    for layer in layers:
        if layer not in LAYERS:
            raise unknown_name("check layer", layer, LAYERS)
    paths = paths or sorted(p for p in (leaderboards / "records").glob("*/*.json") if f"_{setting}_" in p.name)
    if not paths:
        raise XbenchError(f"no {setting} records to check; record one with `xbench run --config {setting} --record`")
    tolerances = tolerances or load_tolerances()
    rows = rows_of(paths)
    # partials, not lambdas: they are pickled when rows are checked side by side
    checks = {
        "metrics": functools.partial(samples.check_row, tolerances=tolerances),
        "steps": functools.partial(steps.check_row, tolerances=tolerances, leaderboards=leaderboards),
    }
    if "end-to-end" in layers:
        n = sum(len(end_to_end.headline(row, tolerances)) for row in rows)
        checks["end-to-end"] = functools.partial(
            end_to_end.check_row, tolerances=tolerances, runs_dir=runs_dir, comparisons=n
        )
    out: list[Comparison] = []
    for layer in (layer for layer in LAYERS if layer in layers):
        if side_by_side(rows) > 1:
            done_by_row = in_processes(checks[layer], rows, side_by_side(rows), layer, log)
        else:
            done_by_row = {}
            for i, row in enumerate(rows):
                done_by_row[i], took = _timed(checks[layer], row)
                _log(log, layer, row, done_by_row[i], took)
        out += [c for i in range(len(rows)) for c in done_by_row[i]]  # in row order, however they finished
    return out, rows


def side_by_side(rows: list[Row]) -> int:
    """How many rows a layer checks at once: as many as this machine's cores hold at the recordings' thread
    counts. Every layer fixes its row's thread count (the metrics and end-to-end layers the recording's, the
    steps layer one), so two one-thread rows share two cores without changing a result."""
    threads = max(int(row.first[1].versions.get("threads", 1)) for row in rows)
    return max(1, min(len(rows), (os.cpu_count() or 1) // threads))


def in_processes(check: Callable, rows: list[Row], workers: int, layer: str, log=None) -> dict[int, list[Comparison]]:
    """``check(row)`` for every row in ``workers`` fresh processes (spawned: no torch state inherited; ``check``
    must pickle); {row index: its comparisons}, each logged as it finishes. The longest rows (by their recorded
    wall time) start first, so that the workers finish together rather than one waiting on a long last row."""
    done_by_row = {}
    longest_first = sorted(range(len(rows)), key=lambda i: -rows[i].recorded_seconds)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_timed, check, rows[i]): i for i in longest_first}
        for future in as_completed(futures):
            i = futures[future]
            done_by_row[i], took = future.result()
            _log(log, layer, rows[i], done_by_row[i], took)
    return done_by_row


def _timed(check: Callable, *args) -> tuple[list[Comparison], float]:
    start = time.perf_counter()
    return check(*args), time.perf_counter() - start


def _log(log, layer: str, row: Row, done: list[Comparison], took: float) -> None:
    if log is not None:  # the whole check takes minutes: a log or CI sees each record as it finishes
        failed = sum(not c.ok for c in done)
        log(f"{layer} {row.first[0].name}: {len(done)} compared, {failed} failed ({took:.0f} s)")
