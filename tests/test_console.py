"""What a newcomer sees on the console: no library warnings they cannot act on, a result table that fits a log's
80 columns, and one line that reads the run against the calibration."""

import dataclasses
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from benchmark.pipeline.display import calibration_line, results_table
from benchmark.pipeline.results import evidence_path, load_evidence, load_result
from metrics import METRICS, fidelity, weights

RECORD = Path(__file__).resolve().parents[1] / "leaderboards" / "records" / "phantom" / "xraygan_full_tiny_s0.json"


def test_torchscript_inception_loads_without_a_warning():
    """torch's ``torch.jit.load`` FutureWarning is silenced where the call is made, and only there."""
    resolved = weights.resolve("inception-tf-pool3")
    fidelity._inception_state.cache_clear()
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fidelity._inception_state(resolved.spec.name, str(resolved.path), resolved.sha256)
    assert not [str(w.message) for w in caught if "jit.load" in str(w.message)]
    assert warnings.filters == filters  # not a global ignore


def _plain(console_width: int | None, renderables) -> str:
    console = Console(file=io.StringIO(), width=console_width, color_system=None)
    for r in renderables:
        console.print(r)
    return console.file.getvalue()


def test_result_table_fits_80_columns_without_a_terminal(monkeypatch):
    """Without a terminal rich sizes the console to 80 columns; every interval stays whole on its line."""
    monkeypatch.delenv("COLUMNS", raising=False)
    result = load_result(RECORD)
    text = _plain(None, results_table([result]))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    intervals = [
        f"[{lo:.2f}, {hi:.2f}]"
        for view in ("frontal", "lateral", "pair")
        for key, value in result.metrics[view].items()
        if key.endswith("_ci") and key[:-3] in (*METRICS, "vc_deranged") and max(lo := value[0], hi := value[1]) < 1000
    ]
    assert len(intervals) >= 8
    for interval in intervals:
        assert any(interval in line for line in lines), f"{interval} is not whole on one line:\n{text}"


def test_calibration_line_reads_the_run_against_its_own_calibration():
    """The line's numbers are the run's own: change the recorded ceiling and the line follows it; lower the
    deranged pairs' P(same) and the line says the views share the patient."""
    result, evidence = load_result(RECORD), load_evidence(evidence_path(RECORD))
    pair = result.metrics["pair"]
    line = calibration_line(result, evidence)
    assert line.startswith(
        f"vc {pair['vc']:.3f} against real matched {pair['vc_real_matched']:.2f} and "
        f"mismatched {pair['vc_real_mismatched']:.2f}"
    )
    assert "vc_deranged equal to vc" in line  # XRayGAN's tiny samples: recorded vc 0.116, vc_deranged 0.117

    moved = dataclasses.replace(result, metrics={**result.metrics, "pair": {**pair, "vc_real_matched": 0.5}})
    assert "real matched 0.50" in calibration_line(moved, evidence)

    lowered = {**evidence, "vc_deranged/pair": evidence["vc/pair"] - 0.05}
    assert "vc_deranged below vc" in calibration_line(result, lowered)
    low, high = re.search(r"\[([-+.\d]+), ([-+.\d]+)\]", calibration_line(result, lowered)).groups()
    assert float(low) == pytest.approx(0.05, abs=1e-3) and float(high) == pytest.approx(0.05, abs=1e-3)

    assert calibration_line(result, None).endswith(f"mismatched {pair['vc_real_mismatched']:.2f}")
    no_vc = dataclasses.replace(result, metrics={**result.metrics, "pair": {}})
    assert calibration_line(no_vc, evidence) is None
    assert np.isfinite(evidence["vc/pair"]).all()


def test_check_prints_a_line_per_record_as_it_finishes(xbench, monkeypatch):
    """``xbench check`` runs for minutes: each record's line comes when that record is done, not at the end."""
    from benchmark.pipeline.check import Comparison, samples

    events = []

    def check_row(row, tolerances, metrics=None):
        events.append(f"checking {row.first[0].name}")
        return [Comparison("metrics", row.first[0].name, "pair", "vc", 0.1, 0.1, "±0", True)]

    monkeypatch.setattr(samples, "check_row", check_row)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # rows one after another, here (side by side: test_check_layers)
    records = [RECORD.with_name("dummy_default_tiny_s0.json"), RECORD]
    from benchmark.pipeline.check import check_records

    check_records(records, Path("unused"), RECORD.parents[2], layers=("metrics",), log=events.append)
    assert events == [
        "checking dummy_default_tiny_s0.json",
        "metrics dummy_default_tiny_s0.json: 1 compared, 0 failed (0 s)",
        "checking xraygan_full_tiny_s0.json",
        "metrics xraygan_full_tiny_s0.json: 1 compared, 0 failed (0 s)",
    ]
    result = xbench("check", *records, "--layer", "metrics")
    assert result.exit_code == 0, result.output
    assert "metrics xraygan_full_tiny_s0.json: 1 compared, 0 failed" in result.output
