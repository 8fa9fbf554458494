"""Measure what ``xbench check`` must tolerate, and write ``leaderboards/tolerances.toml`` and the first-steps
golden ``leaderboards/check/steps.json`` from the measurement.

    python scripts/measure_tolerances.py --save measured.json   # every tiny row, on each kernel path here
    python scripts/measure_tolerances.py --from measured.json   # rewrite from a saved measurement (e.g. after
                                                                # more seeds are recorded: their spread is stated)
    python scripts/measure_tolerances.py --reuse-metrics measured.json   # new probes, the saved evaluations

Each kernel path is a fresh process with the instruction sets capped (``KERNEL_PATHS``) and a cold feature
cache: a cheap stand-in for another CPU type. In each, the steps layer probes every trained row and, on each
capped path, the metrics layer re-evaluates every row's stored samples (on the default path that evaluation is
the record itself). The default path's probes become the golden; the tolerance of each metric and loss is
``MARGIN`` times the largest difference any path shows (at least ``FLOOR``), and the file says which spread
and how many comparisons it covers. The end-to-end layer's interval comes from the recorded seeds; the file
states their spread per metric. Run it on the machine that made the records, after recording.
"""

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KERNEL_PATHS = {  # name -> environment: the caps are read when torch (oneDNN, MKL, ATen) starts
    "default": {},
    "avx2-onednn": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
    "avx2-all": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
END_TO_END = {  # the headline metrics the end-to-end layer compares, and the family-wise level
    "level": 0.95,
    "metrics": {
        "frontal": ["ssim", "fid_inception", "finding_auc"],
        "lateral": ["ssim", "fid_inception", "finding_auc"],
        "pair": ["vc"],
    },
}


def tiny_rows():
    from benchmark.pipeline.check import rows_of
    from benchmark.pipeline.leaderboard import LEADERBOARDS

    return rows_of(sorted(p for p in (LEADERBOARDS / "records").glob("*/*.json") if "_tiny_" in p.name))


def values(out: Path, evaluate: bool) -> None:
    """(In a child process) every row's first-steps losses and, with ``evaluate``, its re-evaluated metrics."""
    import torch

    from benchmark.pipeline.check import samples, steps

    result = {"capability": torch.backends.cpu.get_cpu_capability(), "metrics": {}, "steps": {}}
    for row in tiny_rows():
        if evaluate:
            torch.set_num_threads(int(row.records[0].versions.get("threads", 2)))
            result["metrics"][row.name] = samples.reevaluate(row)
        result["steps"][row.name] = steps.probe_row(row)
        print(row.name, flush=True)
    out.write_text(json.dumps(result))


def spreads(measured: dict[str, dict], rows) -> tuple[dict, dict, int, int]:
    """Per metric and per loss: the largest difference from the record (metrics, absolute) or from the default
    path's probe (losses, relative to 1 + |loss|), over every row and kernel path."""
    from benchmark.pipeline.check.samples import flatten

    metric_spread, loss_spread = defaultdict(float), defaultdict(float)
    n_metrics = n_losses = 0
    golden = measured["default"]["steps"]
    for path, result in measured.items():
        for row in rows:
            recorded = {(v, n): x for v, n, x in flatten(row.records[0].metrics)}
            for view, name, x in flatten(result["metrics"].get(row.name, {})):
                if (view, name) in recorded:
                    base = name.split("[")[0].removesuffix("_n")
                    metric_spread[base] = max(metric_spread[base], abs(x - recorded[(view, name)]))
                    n_metrics += 1
            for key, steps in (result["steps"][row.name] or {}).items():
                for i, losses in enumerate(steps):
                    for name, x in losses.items():
                        ref, step = golden[row.name][key][i][name], f"{name}@{i + 1}"
                        loss_spread[step] = max(loss_spread[step], abs(x - ref) / (1 + abs(ref)))
                        n_losses += 1
    return metric_spread, loss_spread, n_metrics, n_losses


def seed_spreads(rows) -> dict[str, str]:
    """Per headline metric: the seed-to-seed sd of each row with several seeds, as 'min-max over rows'."""
    import statistics

    out = {}
    for view, names in END_TO_END["metrics"].items():
        for name in names:
            sds = [
                statistics.stdev(r.metrics[view][name] for r in row.records)
                for row in rows
                if len(row.records) > 1 and all(name in r.metrics.get(view, {}) for r in row.records)
            ]
            if sds:
                out[f"{view}.{name}"] = f"{min(sds):.3g}-{max(sds):.3g} over {len(sds)} rows"
    return out


def toml_value(value) -> str:
    return json.dumps(value)


def write(measured: dict[str, dict]) -> None:
    from benchmark.pipeline.check.steps import golden_entry, save_golden
    from benchmark.pipeline.check.tolerances import FLOOR, MARGIN, TOLERANCES
    from benchmark.pipeline.leaderboard import LEADERBOARDS

    rows = tiny_rows()
    save_golden(
        LEADERBOARDS,
        {
            row.name: golden_entry(row, measured["default"]["steps"][row.name])
            for row in rows
            if measured["default"]["steps"][row.name] is not None
        },
    )
    metric_spread, loss_spread, n_metrics, n_losses = spreads(measured, rows)
    paths = ", ".join(f"{p} ({r['capability']})" for p, r in measured.items())
    cpu = rows[0].records[0].versions.get("cpu", "unknown")
    lines = [
        "# `xbench check` tolerances, written by scripts/measure_tolerances.py from a measurement; do not edit.",
        f"# Measured on {cpu}, kernel paths: {paths}; {len(rows)} tiny rows.",
        f"# metrics / steps: |now - recorded| <= abs + rel * |recorded|, set to {MARGIN:g} x the largest spread",
        f"# measured (at least {FLOOR:g}); `measured` names that spread. end_to_end: the recorded seeds'",
        "# prediction interval, family-wise at `level` over all end-to-end comparisons of one check.",
    ]

    def section(table: str, spreads: dict, relative: bool, what: str, unmeasured: str) -> list[str]:
        out = ["", f"[{table}.default]", "abs = 0.0", "rel = 0.0", f'measured = "{unmeasured}"']
        for name, spread in sorted(spreads.items()):
            value = max(FLOOR, MARGIN * spread)
            key = name if name.isidentifier() else f'"{name}"'  # "generator@1"
            out += ["", f"[{table}.{key}]", f"abs = {value:.3g}", f"rel = {value:.3g}" if relative else "rel = 0.0"]
            out.append(f'measured = "spread {spread:.3g}: {what}"')
        return out

    lines += section(
        "metrics",
        metric_spread,
        False,
        f"max |re-evaluated - recorded|, {len(rows)} rows, capped paths",
        "counts and anything not measured must match exactly",
    )
    lines += section(
        "steps",
        loss_spread,
        True,
        f"max |probe - default| / (1 + |loss|), {len(measured) - 1} capped paths",
        "a loss not measured must match exactly",
    )
    lines += [
        "",
        "[end_to_end]",
        f"level = {END_TO_END['level']}",
        f"measured = {toml_value('seed sd: ' + '; '.join(f'{k} {v}' for k, v in seed_spreads(rows).items()))}",
        "",
        "[end_to_end.metrics]",
        *(f"{view} = {toml_value(names)}" for view, names in END_TO_END["metrics"].items()),
    ]
    TOLERANCES.write_text("\n".join(lines) + "\n")
    print(f"wrote {TOLERANCES} ({n_metrics} metric and {n_losses} loss comparisons measured)")


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["values"]:
        values(Path(args[1]), evaluate=args[2] == "evaluate")
        return
    if args[:1] == ["--from"]:
        write(json.loads(Path(args[1]).read_text()))
        return
    from benchmark.core.cache import cache_root

    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in KERNEL_PATHS.items():
            out = Path(tmp) / f"{name}.json"
            print(f"kernel path {name}: {env or 'no caps'}", flush=True)
            if env:  # a cold feature cache: the real images' features are extracted on this path too, as on a
                # fresh machine (the rendered images are the same bytes everywhere: shared)
                cache = Path(tmp) / f"cache-{name}"
                (cache / "features").mkdir(parents=True)
                (cache / "images").symlink_to(cache_root() / "images")
                env = env | {"XBENCH_CACHE_DIR": str(cache)}
            # On the recording's own path the evaluation is the record's: only the probes are new there.
            evaluate = "evaluate" if env and args[:1] != ["--reuse-metrics"] else "probe"
            subprocess.run([sys.executable, __file__, "values", str(out), evaluate], env=os.environ | env, check=True)
            measured[name] = json.loads(out.read_text())
    if args[:1] == ["--save"]:
        Path(args[1]).write_text(json.dumps(measured))
    if args[:1] == ["--reuse-metrics"]:  # the probes measured anew, the evaluations from an earlier measurement
        for name, earlier in json.loads(Path(args[1]).read_text()).items():
            measured[name]["metrics"] = earlier["metrics"]
    write(measured)


if __name__ == "__main__":
    main()
