"""``xbench check``: re-run recorded configurations and compare every metric with its recorded value.

A record stores its whole resolved configuration; that configuration is re-run. If it no longer hashes to
the recorded one (a setting was added, renamed or removed), or it was measured under another metric protocol
(``metrics.PROTOCOL``: other judges or recipes), the record is stale and the check fails without running. Tolerances
live in ``leaderboards/tolerances.toml``, each with its reason.
"""

import dataclasses
import math
import tomllib
from pathlib import Path

import torch

from benchmark.core.errors import XbenchError, unknown_name
from benchmark.pipeline.config import SETTINGS, config_from_dict
from benchmark.pipeline.results import RunResult, load_result
from benchmark.pipeline.runner import run
from metrics import PROTOCOL

TOLERANCES = Path(__file__).resolve().parents[2] / "leaderboards" / "tolerances.toml"


@dataclasses.dataclass(frozen=True)
class Tolerance:
    abs: float
    rel: float
    reason: str

    def allows(self, recorded: float, now: float) -> bool:
        return math.isclose(now, recorded, abs_tol=self.abs, rel_tol=self.rel)


@dataclasses.dataclass(frozen=True)
class Comparison:
    record: str
    view: str
    metric: str
    recorded: float | None
    now: float | None
    tolerance: Tolerance | None
    ok: bool
    why: str = ""

    @property
    def stale(self) -> bool:
        """The record could not be compared at all (another protocol or config schema): re-record it."""
        return self.metric in ("protocol", "config")


def load_tolerances(path: Path = TOLERANCES) -> dict[str, Tolerance]:
    try:
        data = tomllib.loads(path.read_text())
        tolerances = {name: Tolerance(float(t["abs"]), float(t["rel"]), str(t["reason"])) for name, t in data.items()}
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
        raise XbenchError(f"{path}: each table needs abs, rel and reason ({err})") from None
    if "default" not in tolerances:
        raise XbenchError(f"{path}: needs a [default] tolerance")
    return tolerances


def compare(name: str, recorded: RunResult, now: RunResult, tolerances: dict[str, Tolerance]) -> list[Comparison]:
    """Every numeric metric of the record against the re-run (CI bounds and counts included)."""
    rows = []
    for view, values in recorded.metrics.items():
        for metric, old in values.items():
            if not isinstance(old, (int, float)) or isinstance(old, bool):
                continue
            new = now.metrics.get(view, {}).get(metric)
            tol = tolerances.get(metric.removesuffix("_n"), tolerances["default"])
            if not isinstance(new, (int, float)):
                rows.append(Comparison(name, view, metric, old, None, tol, False, "missing in the re-run"))
            else:
                rows.append(Comparison(name, view, metric, old, new, tol, tol.allows(old, new)))
    return rows


def check_record(path: Path, runs_dir: Path, tolerances: dict[str, Tolerance]) -> list[Comparison]:
    recorded = load_result(path)
    protocol = recorded.metrics.get("provenance", {}).get("protocol", {}).get("metrics", "xbench-metrics-1")
    if protocol != PROTOCOL:  # its numbers were measured by other judges or recipes: comparing them means nothing
        return [
            Comparison(
                path.name,
                "-",
                "protocol",
                None,
                None,
                None,
                False,
                f"stale protocol, re-record: recorded under metric protocol {protocol}, this xbench measures "
                f"{PROTOCOL}; re-record with `xbench run ... --record`",
            )
        ]
    cfg = config_from_dict(recorded.config)
    if cfg.config_hash != recorded.config_hash:  # a setting was added, renamed or removed since
        return [
            Comparison(
                path.name,
                "-",
                "config",
                None,
                None,
                None,
                False,
                f"the configuration schema changed since recording ({recorded.config_hash} -> "
                f"{cfg.config_hash}); re-record with `xbench run ... --record`",
            )
        ]
    # The same intra-op thread count as the recording: float reductions split differently otherwise, and
    # GAN training amplifies the difference past any useful tolerance (seen: SSIM 0.18 vs 0.21).
    torch.set_num_threads(int(recorded.versions.get("threads", torch.get_num_threads())))
    now = run(cfg, runs_dir=runs_dir)
    return compare(path.name, recorded, now, tolerances)


def check_records(
    paths: list[Path] | None, runs_dir: Path, leaderboards: Path, setting: str = "tiny"
) -> tuple[list[Comparison], int]:
    """Re-run ``paths`` (default: every committed record of ``setting`` under ``leaderboards``); (comparisons,
    records). CI checks the tiny records; the small ones take hours on a CPU and are checked by hand."""
    if setting not in SETTINGS:
        raise unknown_name("config", setting, SETTINGS)
    paths = paths or sorted(p for p in (leaderboards / "records").glob("*/*.json") if f"_{setting}_" in p.name)
    if not paths:
        raise XbenchError(f"no {setting} records to check; record one with `xbench run --config {setting} --record`")
    tolerances = load_tolerances()
    return [row for path in paths for row in check_record(path, runs_dir, tolerances)], len(paths)
