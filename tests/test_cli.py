"""The command line: exit codes, one-line errors, and the data commands on fixture trees."""

from pathlib import Path

import pytest
from PIL import Image


@pytest.mark.parametrize(
    "args,message",
    [
        (("data", "info", "nope"), "unknown dataset 'nope'; choose one of: mimic, openi, phantom"),
        (("data", "info", "openi"), "dataset openi needs its images: set data.root=DIR"),
        (("data", "info", "phantom", "--on-error", "later"), "data.on_error must be 'raise' or 'skip'"),
        (("data", "download", "mimic"), "nothing to download for mimic: MIMIC-CXR is credentialed"),
        (("data", "preview", "phantom", "--cases", "0"), "--cases must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(xbench, args, message):
    result = xbench(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"xbench: error: {message}") and result.stderr.count("\n") == 1


def test_data_info_on_an_openi_tree(xbench, openi_tree):
    result = xbench("data", "info", "openi", "--root", openi_tree, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "train cases" in result.output and "2" in result.output
    assert "skipped cases" in result.output and "2579" in result.output  # 2,585 - 6 cases with images


def test_data_preview_writes_a_sheet(xbench, openi_tree, tmp_path):
    out = tmp_path / "sheet.png"
    result = xbench("data", "preview", "openi", "--root", openi_tree, "--cases", 2, "--size", 64, "--out", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as sheet:
        assert sheet.mode == "L" and sheet.height >= 2 * 64
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_ls_datasets(xbench):
    result = xbench("ls", "datasets")
    assert result.exit_code == 0 and all(name in result.output for name in ("phantom", "openi", "mimic"))


def test_data_info_lists_few_skipped_cases_and_writes_them_all(xbench, openi_tree):
    """A partial download skips thousands of cases: a count and the first few on the console, all of them in the
    file it names (case id, tab, why), written atomically."""
    result = xbench("data", "info", "openi", "--root", openi_tree, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("  ") and ": " in line]
    assert len(skipped) == 5, result.output
    assert "skipped 2579 cases" in result.output
    path = Path(result.output.rstrip().splitlines()[-1].split(": ", 1)[1])
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    assert len(rows) == 2579 and all(len(r) == 2 and r[1] for r in rows)
    assert not list(path.parent.glob(".*.tmp"))


def test_a_run_whose_splits_cannot_train_or_evaluate_stops_before_training(xbench, tmp_path):
    """One real pair on disk (1 train case, 0 test cases after skipping): one line with the counts and what is
    missing, exit 2, no run directory (was a traceback from VCN training)."""
    from tests.conftest import first_rows, write_png

    row = next(r for r in first_rows("openi.csv.gz", 1) if r.split == "train")
    folder = tmp_path / "openi" / "NLMCXR_png"
    write_png(folder / f"{row.frontal}.png", 0)
    write_png(folder / f"{row.lateral}.png", 1)
    runs = tmp_path / "runs"
    result = xbench(
        "run", "--method", "xraygan", "--dataset", "openi", "--config", "tiny", "--runs-dir", runs,
        "--set", f"data.root={tmp_path / 'openi'}", "--set", "data.on_error=skip",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "openi has 1 train, 0 val, 0 test cases" in result.stderr
    assert "at least 2 train cases to train and 2 test cases to evaluate" in result.stderr
    assert not runs.exists() or not any(runs.iterdir())
