"""What the command line shows: rich tables built from the pipeline's results (the CLI only prints them)."""

from collections.abc import Iterable

from rich.table import Table

from benchmark.data.datasets import DATASETS, Dataset, Splits
from benchmark.pipeline.catalog import MethodEntry
from benchmark.pipeline.check import Comparison
from benchmark.pipeline.leaderboard import format_cell
from benchmark.pipeline.results import RunResult
from benchmark.pipeline.verdicts import with_differences
from metrics import METRICS
from metrics.registry import weights_users

VIEWS_AND_PAIR = ("frontal", "lateral", "pair")


def data_info_tables(name: str, ds: Dataset, splits: Splits, extra: dict | None = None) -> list[Table]:
    """Cases per split, skipped cases, the dataset's own summary lines (then ``extra``), and one table per
    nested summary."""
    table = Table(title=f"{name}: {ds.description}", show_header=False)
    for split in ("train", "val", "test"):
        table.add_row(f"{split} cases", str(len(splits[split])))
    table.add_row("skipped cases", str(len(splits.skipped)))
    tables = [table]
    for label, value in {**ds.summary(splits), **(extra or {})}.items():
        if not isinstance(value, dict):
            table.add_row(label, str(value))
            continue
        sub = Table("MeSH term", "cases", title=label)
        for term, count in value.items():
            sub.add_row(term, str(count))
        tables.append(sub)
    return tables


def results_table(results: Iterable[RunResult]) -> list[Table]:
    """Per run: one row per metric and view, value and 95 % interval in columns of their own, so that the
    table fits the 80 columns of a log or CI console without wrapping an interval onto a second line (rich
    sizes a console that is not a terminal to 80). N and the sample spread in the caption; the full result
    (real floors, judge calibration, provenance) is in the run's result.json."""
    tables = []
    for r in results:
        title = f"{r.run_id}: N = {r.n_test_cases} test cases"
        table = Table("metric", "view", "value", "95 % interval", title=title, min_width=min(len(title), 80))
        names = [n for n in METRICS if any(n in r.metrics.get(v, {}) for v in VIEWS_AND_PAIR)]
        for name in names + [n for n in ("vc_deranged", "vc_self") if n in r.metrics.get("pair", {})]:
            label = f"{METRICS[name].arrow} {name}" if name in METRICS else name
            for view in VIEWS_AND_PAIR:
                values = r.metrics.get(view, {})
                if values.get(name) is None:
                    continue
                value, _, interval = format_cell(values[name], None, values.get(f"{name}_ci")).partition(" ")
                table.add_row(label, view, value, interval)
                label = ""  # the metric's name once, on its first view
        spread = r.sample_spread or {}
        if spread:
            table.caption = "samples vary across reports by " + ", ".join(
                f"{v}: {s['fake_std']:.1f} grey levels (real {s['real_std']:.1f})" for v, s in spread.items()
            )
        tables.append(table)
    return tables


def calibration_line(r: RunResult, evidence: dict | None = None) -> str | None:
    """The run's vc read against the judge's calibration, in one line: the real matched (ceiling) and mismatched
    (floor) pairs the evaluation measured beside it, and whether ``vc_deranged`` (its frontals against other
    cases' generated laterals) falls below vc, meaning the two views carry one patient. That reading is the
    per-case difference vc - vc_deranged, paired on test cases (``evidence``: the run's evidence.npz), with
    a bootstrap 95 % interval: the leaderboard's ``vc_gap`` (``verdicts.with_differences``); without evidence the
    line stops at the calibration. None when the run has no vc.
    """
    pair = r.metrics.get("pair", {})
    keys = METRICS["vc"].calibration
    ceiling, floor = pair.get(keys["real"]), pair.get(keys["mismatched"])
    if pair.get("vc") is None or ceiling is None or floor is None:
        return None
    line = f"vc {pair['vc']:.3f} against real matched {ceiling:.2f} and mismatched {floor:.2f}"
    derived = with_differences(r.metrics, evidence)[0]["pair"]
    if derived.get("vc_gap_ci") is None or derived["vc_gap_n"] < 2:
        return line
    gap, (lo, hi) = derived["vc_gap"], derived["vc_gap_ci"]
    said = f"difference {gap:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    if lo > 0:
        return f"{line}; vc_deranged below vc ({said}): the two views share the patient"
    if hi < 0:
        return f"{line}; vc_deranged above vc ({said}): the views of one case match less than two cases'"
    return f"{line}; vc_deranged equal to vc ({said}): no patient is shared"


def check_failures(rows: Iterable[Comparison]) -> list[str]:
    """One plain line per failed comparison, at full precision: CI logs are 80 columns wide, and a table
    cut to that width hides the very digits that failed."""
    lines = []
    for r in rows:
        kind = "STALE" if r.stale else "REGRESSION"
        delta = "" if r.recorded is None or r.now is None else f", |diff| {abs(r.now - r.recorded):.3g}"
        lines.append(
            f"{kind} {r.layer} {r.record} {r.view} {r.metric}: recorded {_number(r.recorded, 10)}, "
            f"now {_number(r.now, 10)}{delta}, allowed {r.allowed}" + (f" ({r.why})" if r.why else "")
        )
    return lines


def check_summary(rows: list[Comparison]) -> Table:
    """Per layer and record: comparisons, failures, and the recording machine against this one."""
    table = Table("layer", "record", "compared", "failed", title="xbench check: by layer")
    seen: dict[tuple[str, str], list[Comparison]] = {}
    for r in rows:
        seen.setdefault((r.layer, r.record), []).append(r)
    for (layer, record), group in seen.items():
        failed = sum(not r.ok for r in group)
        table.add_row(layer, record, str(len(group)), f"[red]{failed}[/red]" if failed else "0")
    return table


def rows_table(title: str, headers, rows) -> Table:
    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*row)
    return table


def datasets_table() -> Table:
    return rows_table("datasets", ("name", "what"), ((name, cls.description) for name, cls in DATASETS.items()))


def methods_table(entries: list[MethodEntry]) -> Table:
    with_counts = any(e.parameters is not None for e in entries)
    table = Table("name", "variants", "parameters at the paper setting" if with_counts else "what", title="methods")
    for e in entries:
        detail = e.summary if e.parameters is None else "\n".join(f"{k}: {v:,}" for k, v in e.parameters.items())
        table.add_row(e.name, ", ".join(e.variants), detail or "none")
    return table


def metrics_table() -> Table:
    rows = (
        (name, s.arrow, "/".join(s.scope), ", ".join(s.weights) or "-", s.protocol_note) for name, s in METRICS.items()
    )
    return rows_table("metrics", ("name", "", "scope", "weights", "protocol"), rows)


def weights_list_table(rows: list[dict]) -> Table:
    cells = (
        (
            r["name"],
            r["file"],
            ", ".join(weights_users(r["name"])),
            r["path"] or "[red]missing[/red]",
            r["sha256"][:16],
            r["source"],
        )
        for r in rows
    )
    return rows_table("weights", ("name", "file", "used by", "found at", "sha256", "source"), cells)


def weights_verify_table(rows: list[dict]) -> Table:
    cells = ((r["name"], r["status"], r["path"] or "", r.get("hint", "")) for r in rows)
    return rows_table("weights", ("name", "status", "path", "how to get it"), cells)


def _number(value: float | None, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}g}"
