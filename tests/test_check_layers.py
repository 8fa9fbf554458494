"""``xbench check``'s three layers: each catches the faults it is meant for, and passes a correct xbench.

The planted faults are the issue's: the L2 weight set to 0 and the VC term's sign flipped (the steps layer), the
SSIM window changed and a judge's input normalisation changed (the metrics layer). Each test first shows the
layer passing without the fault on the same inputs, so the failure is the fault's.
"""

import copy
import dataclasses
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from benchmark.data import images
from benchmark.pipeline.check import (
    Comparison,
    Row,
    end_to_end,
    in_processes,
    rows_of,
    samples,
    side_by_side,
    steps,
)
from benchmark.pipeline.check.end_to_end import compare as compare_end_to_end
from benchmark.pipeline.check.tolerances import FLOOR, MARGIN, load_tolerances, prediction_interval
from benchmark.pipeline.leaderboard import LEADERBOARDS
from benchmark.pipeline.results import load_result
from benchmark.pipeline.runner import samples_path
from methods import get_method, xraygan
from metrics import findings, ssim

RECORDS = LEADERBOARDS / "records" / "phantom"
TINY = sorted(p for p in RECORDS.glob("*_tiny_s*.json"))


@pytest.fixture(scope="module")
def tolerances():
    return load_tolerances()


@pytest.fixture(scope="module")
def xraygan_row() -> Row:
    (row,) = rows_of([RECORDS / "xraygan_full_tiny_s0.json"])
    return row


def failures(rows):
    return [r for r in rows if not r.ok]


# The records and what the layers need of them.


def test_every_tiny_record_says_where_it_was_made_and_keeps_its_samples():
    assert TINY
    for path in TINY:
        versions = load_result(path).versions
        assert versions.get("cpu") and versions.get("cpu_capability"), path.name
        ids, pixels = samples.load_samples(samples_path(path))
        assert pixels.dtype == np.uint8 and pixels.shape[:2] == (len(ids), 2)


def test_every_trained_tiny_row_has_several_seeds_and_recorded_first_steps():
    golden = steps.load_golden(LEADERBOARDS)
    for row in rows_of(TINY):
        if not get_method(row.records[0].method).trains:  # a floor: one seed, no steps
            continue
        assert len(row.records) >= 3, f"{row.name}: the end-to-end interval needs seeds"
        assert golden[row.name]["config_hash"] == row.records[0].config_hash, row.name


def test_each_tolerance_is_the_margin_times_the_spread_it_states(tolerances):
    """Generated from a measurement, never set by hand: the number in `measured` reproduces the tolerance."""
    for table in (tolerances.metrics, tolerances.steps):
        for name, tol in table.items():
            if name == "default":
                assert tol.abs == tol.rel == 0.0
                continue
            spread = float(re.match(r"spread ([0-9.e+-]+):", tol.measured).group(1))
            assert tol.abs == pytest.approx(max(FLOOR, MARGIN * spread), rel=5e-3), name


# The metrics layer: stored samples, re-evaluated.


def test_metrics_layer_passes_and_catches_a_changed_ssim_window(xraygan_row, tolerances, monkeypatch):
    assert not failures(samples.check_row(xraygan_row, tolerances, metrics=("ssim",)))
    monkeypatch.setitem(ssim.SSIM_SETTINGS, "win_size", 7)  # the planted fault: skimage's default window
    failed = failures(samples.check_row(xraygan_row, tolerances, metrics=("ssim",)))
    assert failed and {r.layer for r in failed} == {"metrics"}
    assert {r.metric.split("[")[0] for r in failed} >= {"ssim"} and {r.view for r in failed} == {"frontal", "lateral"}


def test_metrics_layer_passes_and_catches_a_changed_judge_normalisation(xraygan_row, tolerances, monkeypatch):
    assert not failures(samples.check_row(xraygan_row, tolerances, metrics=("finding_auc",)))
    # the planted fault: the findings judge reads images in [0, 1] instead of the [-1, 1] it was trained on
    monkeypatch.setattr(findings, "to_unit_range", lambda x: images.to_unit_range(x).add(1).div(2))
    failed = failures(samples.check_row(xraygan_row, tolerances, metrics=("finding_auc",)))
    assert failed and {r.layer for r in failed} == {"metrics"}
    assert any(r.metric.startswith("finding_auc") for r in failed)


class Stop(Exception):
    """Raised by a stand-in for a layer's work, once it has seen the thread count the layer set."""


@pytest.mark.parametrize(
    "layer, work, check",
    [  # each layer's work replaced by a stand-in that notes torch's thread count, then fails
        ("metrics", (samples, "reevaluate"), lambda row, tol: samples.check_row(row, tol, metrics=("ssim",))),
        ("steps", (steps, "_first_steps"), lambda row, tol: steps.check_row(row, tol, LEADERBOARDS)),
        ("end-to-end", (end_to_end, "run"), lambda row, tol: end_to_end.check_row(row, tol, Path("unused"), 1)),
    ],
)
def test_a_layer_checks_at_the_recorded_thread_count_and_gives_the_callers_back(
    xraygan_row, tolerances, monkeypatch, layer, work, check
):
    """A layer sets torch's thread count to the recording's while it checks a row, and gives the caller's back
    after, even when the row's check fails: a test suite (or a process checking rows one after another) is not left
    at a record's count."""
    recorded = int(xraygan_row.first[1].versions["threads"])
    seen = []

    def stand_in(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise Stop

    monkeypatch.setattr(*work, stand_in)
    before = torch.get_num_threads()
    caller = recorded + 1
    torch.set_num_threads(caller)
    try:
        with pytest.raises(Stop):
            check(xraygan_row, tolerances)
        assert seen == [recorded], layer
        assert torch.get_num_threads() == caller, layer
    finally:
        torch.set_num_threads(before)


# The steps layer: the first updates of a row, loss by loss.


def plant(monkeypatch, changes):
    """Run XRayGAN's training step with ``changes`` to its config: a fault in the step, not in the record."""
    step = xraygan.XRayGAN.train_step

    def faulty(self, state, phase, index):
        cfg, self.cfg = self.cfg, copy.copy(self.cfg)
        for name, value in changes(cfg).items():  # past the config's range checks: a bug, not a setting
            object.__setattr__(self.cfg, name, value)
        try:
            return step(self, state, phase, index)
        finally:
            self.cfg = cfg

    monkeypatch.setattr(xraygan.XRayGAN, "train_step", faulty)


def test_steps_layer_passes_a_correct_xbench(xraygan_row, tolerances):
    rows = steps.check_row(xraygan_row, tolerances, LEADERBOARDS)
    assert rows and not failures(rows)
    assert {r.view for r in rows} == {"0/warmup", "0/gan", "1/gan"}  # every phase of the schedule probed


@pytest.mark.parametrize(
    "fault, changes, phases",
    [  # the L2 term is in every phase's generator loss; the VC term only in the GAN phases
        ("L2 weight 0", lambda cfg: {"l2_weight": 0.0}, {"0/warmup", "0/gan", "1/gan"}),
        ("VC sign flipped", lambda cfg: {"vc_weight": -cfg.vc_weight}, {"0/gan", "1/gan"}),
    ],
)
def test_steps_layer_catches_a_planted_fault(xraygan_row, tolerances, monkeypatch, fault, changes, phases):
    plant(monkeypatch, changes)
    failed = failures(steps.check_row(xraygan_row, tolerances, LEADERBOARDS))
    assert failed, fault
    assert {r.layer for r in failed} == {"steps"} and {r.view for r in failed} == phases
    assert {r.view for r in failed if r.metric == "generator@1"} == phases  # at the first step already


# The end-to-end layer: a re-trained row against its recorded seeds.


def fake_row(values: list[float]) -> Row:
    record = load_result(RECORDS / "xraygan_full_tiny_s0.json")
    records = []
    for seed, v in enumerate(values):
        metrics = {**record.metrics, "pair": {**record.metrics["pair"], "vc": v}}
        records.append(dataclasses.replace(record, seed=seed, metrics=metrics))
    return Row(tuple(RECORDS / f"s{i}.json" for i in range(len(values))), tuple(records))


def test_end_to_end_passes_inside_the_seeds_interval_and_fails_outside(tolerances):
    row = fake_row([0.40, 0.45, 0.50])
    only_vc = dataclasses.replace(
        tolerances, end_to_end=dataclasses.replace(tolerances.end_to_end, metrics={"pair": ("vc",)})
    )
    lo, hi = prediction_interval([0.40, 0.45, 0.50], 0.05)
    inside = {"pair": {"vc": 0.47, "vc_n": 64}}
    outside = {"pair": {"vc": hi + 0.01, "vc_n": 64}}
    assert not failures(compare_end_to_end(row, inside, only_vc, comparisons=1))
    (bad,) = failures(compare_end_to_end(row, outside, only_vc, comparisons=1))
    assert bad.metric == "vc" and bad.layer == "end-to-end"
    wrong_n = {"pair": {"vc": 0.47, "vc_n": 63}}
    assert [r.metric for r in failures(compare_end_to_end(row, wrong_n, only_vc, comparisons=1))] == ["vc_n"]


def test_prediction_interval_covers_a_new_seed_at_its_level():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(20000, 4))
    hits = 0
    for row in draws:
        lo, hi = prediction_interval(list(row[:3]), 0.05)
        hits += lo <= row[3] <= hi
    assert hits / len(draws) == pytest.approx(0.95, abs=0.006)
    # and its width is the textbook one: t(2, 0.975) * s * sqrt(1 + 1/3)
    lo, hi = prediction_interval([0.0, 1.0, 2.0], 0.05)
    assert (hi - lo) / 2 == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 * (4 / 3) ** 0.5)


def a_slow_first_row(row: Row) -> list[Comparison]:
    """A stand-in for a row's re-training: the first row finishes last; says which process ran it."""
    path, recorded = row.first
    time.sleep(2.0 if recorded.method == "copier" else 0.0)
    return [Comparison("end-to-end", path.name, "pair", "vc", 0.0, 0.0, "exact", True, f"pid {os.getpid()}")]


def test_the_end_to_end_layer_retrains_rows_side_by_side_and_reports_them_in_order(monkeypatch):
    rows = rows_of([RECORDS / "copier_default_tiny_s0.json", RECORDS / "dummy_default_tiny_s0.json"])
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert [int(r.first[1].versions["threads"]) for r in rows] == [1, 1] and side_by_side(rows) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert side_by_side(rows[:1]) == 1  # never more processes than rows
    two_threads = dataclasses.replace(rows[0].records[0], versions=rows[0].records[0].versions | {"threads": 2})
    assert side_by_side([dataclasses.replace(rows[0], records=(two_threads,)), rows[1]]) == 1  # 3 cores: 1 such row
    logged = []
    done = in_processes(a_slow_first_row, rows, 2, "end-to-end", logged.append)
    assert [done[i][0].record for i in (0, 1)] == ["copier_default_tiny_s0.json", "dummy_default_tiny_s0.json"]
    assert [line.split()[1] for line in logged] == ["dummy_default_tiny_s0.json:", "copier_default_tiny_s0.json:"]
    pids = {done[i][0].why for i in (0, 1)}
    assert len(pids) == 2 and f"pid {os.getpid()}" not in pids  # two processes, neither this one


def test_rows_start_longest_first_and_are_reported_in_row_order():
    """A row that took longest to record starts first (scheduling only: the report keeps row order). With one
    worker the log shows the start order."""
    rows = rows_of([RECORDS / "dummy_default_tiny_s0.json", RECORDS / "xraygan_full_tiny_s0.json"])
    assert rows[0].recorded_seconds < rows[1].recorded_seconds  # the dummy trains nothing
    logged = []
    done = in_processes(a_slow_first_row, rows, 1, "end-to-end", logged.append)
    assert [line.split()[1] for line in logged] == ["xraygan_full_tiny_s0.json:", "dummy_default_tiny_s0.json:"]
    assert [done[i][0].record for i in (0, 1)] == ["dummy_default_tiny_s0.json", "xraygan_full_tiny_s0.json"]


def test_every_layer_checks_rows_side_by_side(monkeypatch):
    """The metrics and steps layers go side by side as the end-to-end layer does (each fixes its rows' thread
    count): on two cores, two one-thread rows at once, every layer."""
    import benchmark.pipeline.check as check

    sent = []

    def recorded(check_row, rows, workers, layer, log=None):
        sent.append((layer, workers))
        return {i: [] for i in range(len(rows))}

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(check, "in_processes", recorded)
    paths = [RECORDS / "copier_default_tiny_s0.json", RECORDS / "dummy_default_tiny_s0.json"]
    check.check_records(paths, Path("unused"), LEADERBOARDS, layers=("metrics", "steps"))
    assert sent == [("metrics", 2), ("steps", 2)]
