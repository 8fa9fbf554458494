"""End to end through the CLI: run, ablate, table, check, generate, figure, and every bad input."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import benchmark.pipeline.leaderboard as leaderboard
from benchmark.pipeline.results import load_evidence, load_result
from cli import app
from methods import get_method

FAST = ["--set", "data.max_cases=12", "--set", 'eval.metrics=["ssim"]', "--set", "eval.bootstrap=20"]


@pytest.fixture
def xbench(tmp_path, monkeypatch):
    """The CLI, with records and leaderboards in a temporary folder instead of the repository's."""
    monkeypatch.setattr(leaderboard, "LEADERBOARDS", tmp_path / "leaderboards")
    (tmp_path / "leaderboards").mkdir()
    (tmp_path / "leaderboards" / "reported.toml").write_text(
        (leaderboard.Path(__file__).parents[1] / "leaderboards" / "reported.toml").read_text()
    )
    runner_ = CliRunner()
    return lambda *args: runner_.invoke(app, [str(a) for a in args])


@pytest.fixture
def dummy_run(xbench, tmp_path):
    result = xbench("run", "--method", "dummy", *FAST, "--record", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs").iterdir())
    return run_dir


def test_run_writes_the_run_directory_and_a_record(dummy_run, tmp_path):
    for name in ("config.json", "env.json", "vocab.json", "result.json", "ckpt/final.pt"):
        assert (dummy_run / name).is_file(), name
    result = load_result(dummy_run / "result.json")
    assert result.n_test_cases == 12 and 0 < result.metrics["frontal"]["ssim"] <= 1
    lo, hi = result.metrics["frontal"]["ssim_ci"]
    assert lo <= result.metrics["frontal"]["ssim"] <= hi
    assert len(list((dummy_run / "samples" / "lateral").glob("*.png"))) == 12
    recorded = sorted(p.name for p in (tmp_path / "leaderboards" / "records" / "phantom").iterdir())
    stem = "dummy_default_tiny_s0"  # a tiny record keeps its samples, and every record its evidence
    assert recorded == [f"{stem}.evidence.npz", f"{stem}.json", f"{stem}.samples.npz"]
    evidence = load_evidence(tmp_path / "leaderboards" / "records" / "phantom" / f"{stem}.evidence.npz")
    assert evidence["ssim/frontal"].mean() == pytest.approx(result.metrics["frontal"]["ssim"], rel=1e-12)
    assert set(evidence["case_ids"]) == {p.stem for p in (dummy_run / "samples" / "frontal").glob("*.png")}


def test_run_prints_a_compact_result_table_and_the_config_only_when_verbose(xbench, tmp_path):
    quiet = xbench("run", "--method", "dummy", *FAST, "--runs-dir", tmp_path / "runs")
    assert quiet.exit_code == 0, quiet.output
    assert '"vc_weight"' not in quiet.output and '"max_cases"' not in quiet.output  # no config dump
    assert "N = 12 test cases" in quiet.output and "ssim" in quiet.output and "frontal" in quiet.output
    assert "grey levels" in quiet.output  # the sample spread, beside the real images'
    verbose = xbench("run", "--method", "dummy", *FAST, "--runs-dir", tmp_path / "runs", "--verbose")
    assert verbose.exit_code == 0 and '"max_cases": 12' in verbose.output


def test_only_rank_0_prints_under_torchrun(tmp_path):
    import subprocess
    import sys

    env = {**__import__("os").environ, "RANK": "1"}
    code = "from cli import console; console.print('visible'); print(console.quiet)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"]


def test_a_rank_other_than_0_trains_and_writes_nothing(tmp_path, monkeypatch):
    from benchmark.pipeline.config import load_config
    from benchmark.pipeline.runner import run

    monkeypatch.setenv("RANK", "1")  # as torchrun sets it (no process group: world() reads the environment)
    cfg = load_config("dummy", "phantom", sets=[a for a in FAST if a != "--set"])
    assert run(cfg, runs_dir=tmp_path / "runs") is None
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_config_and_writes_nothing(xbench, tmp_path):
    result = xbench(
        "run", "--method", "xraygan", "--set", "model.vc_weight=0.1", "--dry-run", "--runs-dir", tmp_path / "runs"
    )
    assert result.exit_code == 0 and '"vc_weight": 0.1' in result.output
    assert not (tmp_path / "runs").exists()


def test_check_passes_then_fails_on_a_perturbed_record(dummy_run, xbench, tmp_path):
    record = tmp_path / "leaderboards" / "records" / "phantom" / "dummy_default_tiny_s0.json"
    ok = xbench("check", record, "--runs-dir", tmp_path / "check")
    assert ok.exit_code == 0, ok.output
    assert "all" in ok.output and "within tolerance" in ok.output
    data = json.loads(record.read_text())
    data["metrics"]["frontal"]["ssim"] += 0.05
    record.write_text(json.dumps(data))
    bad = xbench("check", record, "--runs-dir", tmp_path / "check")
    assert bad.exit_code == 1 and "comparisons out of tolerance" in bad.output
    # one line per failure, every digit kept whatever the terminal's width (CI logs are 80 columns)
    line = next(x for x in bad.output.splitlines() if x.startswith("REGRESSION") and " ssim:" in x)
    assert f"recorded {data['metrics']['frontal']['ssim']:.10g}" in line and "|diff| 0.05" in line, line


def test_table_renders_the_records_beside_the_paper(dummy_run, xbench, tmp_path):
    result = xbench("table", "--format", "md")
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "leaderboards" / "phantom.md").read_text()
    assert "## Tiny setting" in markdown and "### Table 1a: methods on phantom, one protocol" in markdown
    assert "| dummy [default] |" in markdown
    terminal = xbench("table").output  # the main tables only: their 14 columns wrap the labels at 80 columns
    assert "dummy" in terminal and "[default]" in terminal  # the variant is kept (no markup tag)
    assert "ssim (F)" in markdown and "**" in markdown  # best per column marked
    assert (tmp_path / "leaderboards" / "phantom.csv").read_text().startswith("setting,table,row,kind,seeds,pairs_seen")
    openi = xbench("table", "--dataset", "openi", "--format", "md")
    assert "GAN-INT-CLS (reported)" in openi.output and "272.7" in openi.output


def test_generate_from_a_written_report(dummy_run, xbench, tmp_path):
    out = tmp_path / "gen"
    result = xbench(
        "generate",
        "--checkpoint",
        dummy_run,
        "--report",
        "FINDINGS: Large right pleural effusion, zorblat. IMPRESSION: Effusion.",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "zorblat" in result.output  # words outside the vocabulary are reported
    with Image.open(out / "frontal.png") as img:
        assert img.size == (64, 64) and img.mode == "L"
    assert (out / "lateral.png").is_file() and (out / "sheet.png").is_file()


def test_figure_shows_ground_truth_and_each_recorded_run(dummy_run, xbench, tmp_path):
    out = tmp_path / "figure.png"
    assert "no small records" in xbench("figure", "--out", out, "--runs-dir", tmp_path / "runs").output
    result = xbench("figure", "--config", "tiny", "--cases", 2, "--out", out, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:  # a header line, then 2 rows of images shown at 128 px (the floor alone here)
        assert img.height >= 2 * 128 + 10 and img.width >= 4 * 128


def test_ablate_runs_every_table2_variant(xbench, tmp_path):
    tiny_xraygan = ["--set", "model.epochs=[1,1]", "--set", "model.warmup_epochs=1", "--set", "model.vcn.epochs=1"]
    tiny_xraygan += ["--set", "model.vcn.min_auroc=0"]  # a one-epoch VCN on 12 cases is at chance: no gate
    result = xbench("ablate", *FAST, *tiny_xraygan, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    names = sorted(p.name.split("_s0_")[0] for p in (tmp_path / "runs").iterdir())
    assert names == sorted(f"xraygan_phantom_{v}" for v in get_method("xraygan").variants)  # Table 2, every variant
    assert {"full", "no_hae", "no_mscgan", "no_vcn", "projection"} <= set(get_method("xraygan").variants)


@pytest.mark.parametrize(
    "args,message",
    [
        (("run", "--method", "gan"), "unknown method 'gan'"),
        (("run", "--dataset", "chexpert"), "unknown dataset 'chexpert'"),
        (("run", "--set", 'eval.metrics=["fidd"]'), "unknown metric 'fidd'"),
        (("run", "--set", "model.vc_wieght=1"), "unknown key 'vc_wieght'"),
        (("run", "--set", "data.image_size=big"), "expected int like 64"),
        (("generate", "--checkpoint", "nowhere", "--report", "x"), "missing config.json"),
        (("ablate", "--seeds", "a,b"), "--seeds must be comma-separated integers"),
        (("table", "--format", "tex"), "--format must be md, csv or rich"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(xbench, args, message):
    result = xbench(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_an_empty_report_and_a_corrupt_result_are_errors(dummy_run, xbench, tmp_path):
    empty = xbench("generate", "--checkpoint", dummy_run, "--report", "  .  ")
    assert empty.exit_code == 2 and "the report is empty" in empty.stderr
    corrupt = tmp_path / "leaderboards" / "records" / "phantom" / "broken.json"
    corrupt.write_text("{not json")
    result = xbench("table")
    assert result.exit_code == 2 and "corrupt result file" in result.stderr and "broken.json" in result.stderr


def test_launch_through_submitit_local_executor(tmp_path):
    from benchmark.pipeline.config import load_config
    from benchmark.pipeline.launch import launch

    cfg = load_config("dummy", "phantom", sets=["data.max_cases=8", 'eval.metrics=["ssim"]', "eval.bootstrap=0"])
    (result,) = launch([cfg], launcher="submitit-local", runs_dir=tmp_path, record=False)
    assert result.method == "dummy" and np.isfinite(result.metrics["frontal"]["ssim"])


def test_the_copier_is_flagged_by_copy_rate_and_its_closest_pairs_drawn(xbench, tmp_path):
    sets = ["--set", "data.max_cases=12", "--set", 'eval.metrics=["copy_rate"]', "--set", "eval.bootstrap=20"]
    result = xbench("run", "--method", "copier", *sets, "--record", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    record = tmp_path / "leaderboards" / "records" / "phantom" / "copier_default_tiny_s0.json"
    metrics = load_result(record).metrics
    for view in ("frontal", "lateral"):  # retrieved training films are copies; the real test films are not
        assert metrics[view]["copy_rate"] == 1.0 and metrics[view]["copy_rate_real"] <= 1 / 12
    out = tmp_path / "closest.png"
    result = xbench("figure", "--closest", record, "--cases", 2, "--out", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:  # a header line, then 2 rows per view of sample | training film at 128 px
        assert img.height >= 4 * 128 and img.width >= 2 * 128


def test_the_tiny_figure_draws_the_committed_records_from_their_kept_samples(tmp_path):
    """Without any run directory: every Table 1 row recorded at the tiny setting (the diffusion variants
    included) is drawn from the samples kept beside its record."""
    from benchmark.pipeline.figure import comparison_figure

    out = comparison_figure("phantom", "tiny", 1, tmp_path / "figure.png", runs_dir=tmp_path / "no-runs")
    with Image.open(out) as img:  # ground truth and ten rows (XRayGAN x 2, three baselines x 2, diffusion x 2)
        assert img.width >= 2 * 128 * 11
