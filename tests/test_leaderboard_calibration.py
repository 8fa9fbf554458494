"""Leaderboards show calibration: measured real-image rows apart from the paper's, intervals, N; stale records."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmark.core.errors import XbenchError
from benchmark.pipeline import leaderboard
from benchmark.pipeline.check import check_records
from benchmark.pipeline.results import RunResult
from metrics import METRICS

RECORDS = Path(__file__).resolve().parents[1] / "leaderboards" / "records" / "phantom"


def result(method: str, variant: str, seed: int, vc: float, extra: dict | None = None) -> RunResult:
    view = {
        "fid_inception": 300.0 + seed,
        "fid_inception_ci": [250.0, 360.0],
        "fid_inception_real_floor": 43.21,
        "fid_inception_real_floor_n": 64,
        "finding_auc": 0.55,
        "finding_auc_ci": [0.40, 0.67],
        "finding_auc_real": 0.93,
        "finding_auc_real_ci": [0.9, 0.96],
    }
    pair = {
        "vc": vc,
        "vc_ci": [vc - 0.1, vc + 0.1],
        "vc_real_matched": 0.91,
        "vc_real_matched_ci": [0.88, 0.94],
        "vc_real_mismatched": 0.04,
        "vc_evaluator_auroc": 0.987,
    } | (extra or {})
    return RunResult(
        f"{method}_{seed}", method, "phantom", variant, seed, "tiny", "h", "sha", False, {}, "cpu", 64,
        {"frontal": dict(view), "lateral": dict(view), "pair": pair}, {}, {}, {}, "now",
    )  # fmt: skip


def test_calibration_rows_intervals_and_n_in_the_header():
    records = [
        result("dummy", "default", 0, 0.44),
        result("xraygan", "full", 0, 0.541, {"vc_self": 0.97, "vc_self_n": 64}),
        result("xraygan", "full", 1, 0.561, {"vc_self": 0.95, "vc_self_n": 64}),
    ]
    # no evidence (the names would find the committed records' own): intervals over seeds only
    tables = leaderboard.build_tables("phantom", records, leaderboard.load_reported(), evidence_of=lambda r: None)
    markdown = leaderboard.render_markdown(tables)
    assert (
        "### Table 1a: methods on phantom, one protocol" in markdown and "(tiny setting, N = 64 test cases)" in markdown
    )
    assert markdown.index("## Tiny setting") < markdown.index("### Table 1a")
    cell = markdown_cells(markdown)
    # one seed: value [95 % interval over cases]; two seeds without evidence: mean [Student t over the seeds]
    assert cell("dummy [default]", "finding_auc (F)") == "0.550 [0.40, 0.67]"
    lo, hi = stats.t.interval(0.95, 1, loc=0.551, scale=np.std([0.541, 0.561], ddof=1) / np.sqrt(2))
    assert cell("xraygan [full]", "vc") == f"0.551 [{lo:.2f}, {hi:.2f}]"
    # measured calibration rows, apart from the paper's reported rows
    real = "Real (xbench): real vs real at the same N; VC of real matched pairs"
    assert cell(real, "fid_inception (F)") == "43.210"
    assert cell(real, "vc") == "0.910 [0.88, 0.94]" and cell(real, "finding_auc (F)") == "0.930 [0.90, 0.96]"
    assert cell("Real mismatched pairs (xbench VC floor)", "vc") == "0.040"
    assert cell("VC judge AUROC, real matched vs mismatched (xbench)", "vc") == "0.987"
    assert cell("Real (reported on openi)", "vc") == "0.669"  # the authors' evaluator, in a reported row
    assert "vc_real_matched" not in markdown and cell("xraygan [full]", "vc_self").startswith("0.960 [")
    assert cell(real, "seeds") == "–"
    # the main table holds the headline columns only; vc_self is in the view-consistency detail table
    main = markdown.split("### Table 1a")[1].split("<details>")[0]
    assert "| vc | vc_deranged |" not in main and "vc_self" not in main and "finding_auc (F)" in main
    frame = leaderboard.to_frame(tables)
    assert {"ci_lo", "ci_hi"} <= set(frame.columns) and "calibration" in set(frame["kind"])


def markdown_cells(markdown: str):
    """cell(row, column) -> the text of its first occurrence in any of the markdown's tables."""
    found: dict[tuple[str, str], str] = {}
    header: list[str] = []
    for line in markdown.splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        parts = [c.strip(" *") for c in line.strip("|").split("|")]
        if parts[0] == "method":
            header = parts
            continue
        for column, text in zip(header, parts):
            found.setdefault((parts[0], column), text)
    return lambda row, column: found[(row, column)]


def evidence(record: RunResult) -> dict:
    """Per-case vc values around the record's own vc (64 cases), like metrics.evaluate keeps them."""
    noise = np.random.default_rng([record.seed, len(record.method)]).normal(0, 0.05, 64)
    return {"case_ids": np.array([f"c{i}" for i in range(64)]), "vc/pair": record.metrics["pair"]["vc"] + noise}


def test_each_setting_is_its_own_section_and_separated_differences_are_listed():
    small = [dataclasses.replace(result("xraygan", "protocol", s, 0.80 + 0.01 * s), setting="small") for s in range(3)]
    floor = [dataclasses.replace(result("dummy", "default", s, 0.45 - 0.01 * s), setting="small") for s in range(3)]
    lone = dataclasses.replace(result("stackgan", "xraygan_protocol", 0, 0.7), setting="small")
    records = [result("dummy", "default", 0, 0.44), *small, *floor, lone]
    for r in records:
        r.metrics["pair"]["vc"] = float(evidence(r)["vc/pair"].mean())  # the record's value is its cases' mean
    tables = leaderboard.build_tables("phantom", records, leaderboard.load_reported(), evidence_of=evidence)
    # small: 1a, 1c and 1d (XRayGAN against the faithful baselines, diffusion vs GANs: each has XRayGAN) and 2;
    # tiny: 1a and 2; small first
    assert [t.setting for t in tables] == ["small"] * 2 + ["tiny"] * 2  # Table 1a and Table 2 (protocol) each
    markdown = leaderboard.render_markdown(tables)
    small_part, tiny_part = markdown.split("## Tiny setting")
    assert (
        "## Small setting" in small_part
        and "xraygan [protocol]" in small_part
        and "xraygan [" not in tiny_part.split("Notes:")[0]  # no row (the generated header names its terms)
    )
    # three seeds each, 0.35 apart: separated, printed as the difference with its interval, the better first
    (verdict,) = [v for v in tables[0].separated if v.metric == "vc"]
    assert (verdict.better, verdict.worse) == ("xraygan [protocol]", "dummy [default]")
    assert verdict.interval[0] < verdict.diff < verdict.interval[1] and verdict.interval[0] > 0
    assert f"- {verdict.text()}" in small_part and "- vc: xraygan [protocol] - dummy [default] = +0.3" in small_part
    # one seed: listed, never separated, and no bold for anyone it cannot be told from
    assert "Seed variance not measured (one seed; never called separated): stackgan [xraygan_protocol]" in small_part
    assert all("stackgan" not in (v.better, v.worse) for v in tables[0].verdicts)
    assert "**" not in small_part.split("### Table 2")[0].split("Separated")[0]
    # a column every measured row scores alike is called saturated, not a tie
    assert "finding_auc (F): 0.550 for every measured row (saturated)" in markdown
    # a record made from a tree with uncommitted changes is named
    assert "git_dirty" not in markdown
    dirty = [dataclasses.replace(floor[0], git_dirty=True), *floor[1:]]
    marked = leaderboard.render_markdown(leaderboard.build_tables("phantom", dirty, {}, evidence_of=evidence))
    assert "re-record from a clean commit): dummy [default] (1 of 3 seeds)" in marked


def test_a_record_whose_configuration_no_longer_loads_is_stale_not_a_crash(tmp_path):
    data = json.loads((RECORDS / "dummy_default_tiny_s0.json").read_text())
    data["config"]["eval"]["bootstrap_fid"] = False  # a setting removed since (the small records hold it)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    rows, _ = check_records([old], tmp_path / "runs", tmp_path)
    assert len(rows) == 3 and all(not r.ok and r.stale and r.metric == "config" for r in rows)
    assert "no longer loads" in rows[0].why and "bootstrap_fid" in rows[0].why


def test_reevaluation_drops_the_removed_settings_so_an_old_configuration_loads():
    import importlib.util

    from benchmark.pipeline.config import config_from_dict

    path = Path(__file__).resolve().parents[1] / "scripts" / "reevaluate_records.py"
    spec = importlib.util.spec_from_file_location("reevaluate_records", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    config = json.loads((RECORDS / "dummy_default_tiny_s0.json").read_text())["config"]
    config["eval"]["bootstrap_fid"] = False
    assert config_from_dict(script.migrate(config)).eval.bootstrap == config["eval"]["bootstrap"]
    # a default metric list of its day gains the metrics registered since; a chosen subset stays as chosen
    config["eval"]["metrics"] = list(METRICS)[:3]
    assert config_from_dict(script.migrate(config)).eval.metrics == tuple(METRICS)
    config["eval"]["metrics"] = ["ssim", "vc"]
    assert config_from_dict(script.migrate(config)).eval.metrics == ("ssim", "vc")


def test_a_record_of_another_metric_protocol_is_stale_not_a_regression(tmp_path):
    data = json.loads((RECORDS / "dummy_default_tiny_s0.json").read_text())
    data["metrics"]["provenance"]["protocol"] = {"metrics": "xbench-metrics-1"}  # measured by older judges
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    rows, _ = check_records([old], tmp_path / "runs", tmp_path)  # returns before running anything
    assert len(rows) == 3 and all(not r.ok and r.stale for r in rows)  # one per layer
    assert rows[0].why.startswith("stale protocol, re-record") and not (tmp_path / "runs").exists()


def test_a_table_never_mixes_chest_film_extractors():
    def with_extractor(seed: int, name: str, sha: str) -> RunResult:
        r = result("xraygan", "full", seed, 0.5)
        r.metrics["frontal"]["fid_chestfilm"] = 20.0
        r.metrics["provenance"] = {"fid_chestfilm": {"name": name, "extractor": f"{name} features", "sha256": sha}}
        return dataclasses.replace(r, config={"eval": {"chestfilm": name}})

    same = [with_extractor(0, "judge", "a" * 64), with_extractor(1, "judge", "a" * 64)]
    markdown = leaderboard.render_markdown(leaderboard.build_tables("phantom", same, {}, evidence_of=lambda r: None))
    assert "chest-film columns: eval.chestfilm=judge: judge features (sha256 aaaaaaaaaaaa)" in markdown
    for other in (with_extractor(1, "xrv-densenet121", "b" * 64), with_extractor(1, "judge", "c" * 64)):
        with pytest.raises(XbenchError, match="mix chest-film extractors .*xraygan \\[full\\] s1"):
            leaderboard.build_tables("phantom", [same[0], other], {}, evidence_of=lambda r: None)


def test_the_leaderboard_judges_vc_gap_from_each_records_evidence():
    """Both rows score vc about 0.8, but only XRayGAN's deranged pairs score lower: the leaderboard derives vc_gap
    (vc - vc_deranged, case for case) from each record's evidence, shows it and calls XRayGAN's the larger."""
    rows = [
        dataclasses.replace(result(m, v, s, 0.80 + 0.01 * s), setting="small")
        for m, v in (("xraygan", "protocol"), ("dummy", "default"))
        for s in range(3)
    ]
    drop = {"xraygan": 0.4, "dummy": 0.0}  # how far each row's deranged pairs fall below its own

    def with_deranged(record):
        kept = evidence(record)
        return kept | {"vc_deranged/pair": kept["vc/pair"] - drop[record.method]}

    for r in rows:
        r.metrics["pair"]["vc"] = float(evidence(r)["vc/pair"].mean())
        r.metrics["pair"]["vc_deranged"] = float(with_deranged(r)["vc_deranged/pair"].mean())
    tables = leaderboard.build_tables("phantom", rows, {}, evidence_of=with_deranged)
    (gap,) = [v for v in tables[0].separated if v.metric == "vc_gap"]
    assert (gap.better, gap.worse) == ("xraygan [protocol]", "dummy [default]") and gap.diff > 0.3
    assert not [v for v in tables[0].separated if v.metric == "vc"]  # raw vc cannot tell them apart
    assert "| vc_gap |" in leaderboard.render_markdown(tables)
