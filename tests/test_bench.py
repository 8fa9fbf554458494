"""The speed benchmark runs on the CPU at the tiny setting (GPU figures come from the device tool)."""

import json
import time

import pytest
import torch
from torch import nn

from benchmark.core.errors import XbenchError
from benchmark.pipeline.bench import report
from benchmark.pipeline.bench.suite import TRAINABLE, record_path, run_suite
from benchmark.pipeline.bench.training import (
    PRETRAINING_STEPS_PER_CALL,
    FlopCount,
    measure_in_calls,
    openi_vocab,
    phase_rows,
    schedule_totals,
)
from benchmark.pipeline.leaderboard import LEADERBOARDS
from methods import get_method
from methods.training import StagedMethod
from tests.tiny import tiny_model


def test_phase_rows_report_every_phase_and_vcn_of_xraygan():
    rows = list(phase_rows("xraygan", "tiny", "fp32", device="cpu", warmup=1, steps=2))
    assert [(r["stage"], r["phase"], r["batch"], r["epochs"]) for r in rows] == [
        (0, "warmup", 32, 30),
        (0, "vcn", 32, 6),  # configs/tiny/xraygan.toml: a VCN that passes its gate
        (0, "gan", 32, 3),
        (1, "vcn", 32, 6),
        (1, "gan", 32, 1),
    ]
    for r in rows:
        assert r["ms_per_step"] > 0 and r["pairs_per_s"] == pytest.approx(1000 * r["batch"] / r["ms_per_step"])
        steps_per_epoch = -(-1809 // r["batch"])
        assert r["projected_s"] == pytest.approx(r["epochs"] * steps_per_epoch * r["ms_per_step"] / 1000)
        assert r["gflop_per_pair"] > 0 and r["device"] == "cpu" and r["peak_gib"] is None
    gan = {r["stage"]: r["gflop_per_pair"] for r in rows if r["phase"] == "gan"}
    warm = next(r for r in rows if r["phase"] == "warmup")["gflop_per_pair"]
    assert gan[1] > gan[0] > warm  # a larger stage costs more; the L2 warm-up has no critic
    (total,) = schedule_totals(rows)
    assert total["projected_s"] == pytest.approx(sum(r["projected_s"] for r in rows))


@pytest.mark.parametrize("method", sorted(set(TRAINABLE) - {"xraygan"}))  # XRayGAN: the test above
def test_phase_rows_time_every_phase_of_every_method(method):
    """Each phase of a method's schedule gets a row (plus AttnGAN's DAMSM pretraining); a method that trains in
    no steps (the dummy floor) gets none."""
    rows = list(phase_rows(method, "tiny", "fp32", device="cpu", warmup=1, steps=1))
    assert all(r["method"] == method and r["pairs_per_s"] > 0 for r in rows)
    model = tiny_model(method)
    cls = get_method(method)
    phases = cls(model, openi_vocab(), image_size=64, device="cpu").phases() if issubclass(cls, StagedMethod) else []
    timed = [(r["stage"], r["phase"]) for r in rows if r["phase"] != "damsm"]
    assert timed == [(p.stage, p.name) for p in phases if p.epochs > 0]
    assert [r["phase"] for r in rows if r["phase"] == "damsm"] == (["damsm"] if method == "attngan" else [])


@pytest.mark.parametrize(("warmup", "steps", "calls"), [(1, 1, 2), (3, 10, 4), (5, 8, 4)])
def test_a_pretraining_is_timed_for_the_steps_asked_in_whole_calls(warmup, steps, calls, monkeypatch):
    """The VCN and DAMSM rows time calls of several steps: --warmup and --steps count steps, rounded up to calls
    (the first call is the warm-up's first), and the figures are per step."""
    from benchmark.pipeline.bench import training

    def timed(fn, device):  # every call takes exactly 10 ms: the per-step figure is then exact
        fn()
        return 0.01

    monkeypatch.setattr(training, "timed", timed)
    made = []
    result = measure_in_calls(lambda: made.append(1), torch.device("cpu"), warmup, steps, False)
    assert len(made) == calls
    assert result["median_s"] == pytest.approx(0.01 / PRETRAINING_STEPS_PER_CALL)


def test_flop_count_matches_the_convolution_formula():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    with FlopCount() as forward:
        y = conv(x)
    assert forward.total == 2 * (2 * 8 * 16 * 16) * (3 * 3 * 3)  # 2 x outputs x multiply-adds per output
    with FlopCount() as backward:
        y.sum().backward()
    assert backward.total == 2 * forward.total  # the input gradient and the weight gradient


def test_unknown_mode_method_and_setting_are_user_errors():
    with pytest.raises(XbenchError, match="unknown bench mode 'fp8'"):
        run_suite(("xraygan",), "tiny", ("fp8",), evaluation=False, device="cpu")
    with pytest.raises(XbenchError, match="unknown method 'sdxl'"):
        run_suite(("sdxl",), "tiny", ("fp32",), evaluation=False, device="cpu")
    with pytest.raises(XbenchError, match="unknown setting"):
        run_suite(("xraygan",), "huge", ("fp32",), evaluation=False, device="cpu")


def test_modes_that_cannot_run_are_skipped_with_a_reason_and_bf16_runs_on_the_cpu():
    doc = run_suite(
        ("gan_int_cls",), "tiny", ("bf16", "compile", "nchw"), steps=1, warmup=1, evaluation=False, device="cpu"
    )
    assert {(s["mode"], s["why"]) for s in doc["skipped"]} == {
        ("compile", "gan_int_cls has no compile option"),  # from its Config's fields, not from its name
    }
    assert {(r["mode"], r["precision"]) for r in doc["rows"]} == {("bf16", "bf16"), ("nchw", "bf16")}


def test_a_failed_evaluation_keeps_the_training_rows(monkeypatch):
    from benchmark.pipeline.bench import evaluation

    def missing(*args, **kwargs):
        raise XbenchError("torchxrayvision is not installed")

    monkeypatch.setattr(evaluation, "time_evaluation", missing)
    doc = run_suite(("stackgan",), "tiny", ("fp32",), steps=1, warmup=1, device="cpu")
    assert len(doc["rows"]) == 2 and doc["evaluation"] is None
    assert doc["skipped"] == [
        {"method": "evaluation", "mode": "-", "why": "evaluation not timed: torchxrayvision is not installed"}
    ]
    title, _, rows = report.tables(doc, {})[-1]
    assert title == "Not timed" and rows[0][2].endswith("not installed")


def _paper_doc(device: str) -> dict:
    """A document as a GPU would record it (figures made up for the rendering only)."""
    rows = [
        {"method": "xraygan", "mode": "bf16", "precision": "bf16", "stage": k, "phase": "gan", "batch": b, "epochs": 90,
         "ms_per_step": 10.0, "pairs_per_s": p, "gflop_per_pair": 1.0, "tflops": 1.0, "peak_gib": 2.0,
         "first_step_s": 1.0, "projected_s": 60.0, "device": device}
        for k, (b, p) in enumerate([(96, 7312.0), (48, 1931.0), (24, 140.6), (12, 47.4)])
    ]  # fmt: skip
    return {
        "schema": 1, "created": "now", "setting": "paper", "device": device, "torch": "2.11", "cuda": "13",
        "git_sha": "abc", "git_dirty": False, "modes": ["bf16"], "methods": ["xraygan"],
        "protocol": {"warmup": 5, "steps": 20, "train_cases": 1809},
        "rows": rows, "skipped": [], "schedule": schedule_totals(rows), "evaluation": None,
    }  # fmt: skip


def test_official_comparison_uses_the_same_gpu_kind():
    reference = report.load_reference(LEADERBOARDS / "speed_reference.toml")
    title, headers, rows = report.official_table(_paper_doc("NVIDIA H200"), reference)
    assert "H200" in title and headers[2] == "official H200 pairs/s"
    assert [row[3] for row in rows] == ["7,312.0 (10.00x)", "1,931.0 (5.00x)", "140.6 (1.00x)", "47.4 (1.00x)"]
    assert report.official_table(_paper_doc("cpu"), reference) is None  # no official CPU figures


def test_render_markdown_says_when_no_gpu_was_measured(tmp_path):
    reference = report.load_reference(LEADERBOARDS / "speed_reference.toml")
    text = report.render_markdown([], reference)
    assert "not measured yet" in text and "| H100 | 3 | 12 | 271.7 | 44.2 | 16.5 |" in text
    text = report.render_markdown([_paper_doc("NVIDIA H100 80GB HBM3")], reference)
    assert "not measured yet" not in text and "official H100 pairs/s" in text
    doc = _paper_doc("NVIDIA H100 80GB HBM3")
    assert record_path(doc, tmp_path).name == "nvidia-h100-80gb-hbm3_paper_bf16_xraygan.json"
    doc["methods"] = list(reversed(TRAINABLE))  # every method, in any order: no suffix
    assert record_path(doc, tmp_path).name == "nvidia-h100-80gb-hbm3_paper_bf16.json"


def test_cli_bench_writes_the_document(xbench, tmp_path):
    out = tmp_path / "bench.json"
    result = xbench("bench", "--method", "stackgan", "--steps", "1", "--warmup", "1", "--no-evaluation", "--out", out)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["setting"] == "tiny" and {r["stage"] for r in doc["rows"]} == {1, 2}
    bad = xbench("bench", "--modes", "fp32,turbo", "--out", str(tmp_path / "x.json"))
    assert bad.exit_code == 2 and "unknown bench mode 'turbo'" in bad.output
    assert not (tmp_path / "x.json").exists()


def test_cli_bench_record_renders_speed_md(xbench, tmp_path, monkeypatch):
    from benchmark.pipeline import leaderboard

    monkeypatch.setattr(leaderboard, "LEADERBOARDS", tmp_path)
    (tmp_path / "speed_reference.toml").write_text((LEADERBOARDS / "speed_reference.toml").read_text())
    args = ("bench", "--method", "gan_int_cls", "--steps", "1", "--warmup", "1", "--no-evaluation", "--record")
    result = xbench(*args, "--out", tmp_path / "bench.json")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "speed" / "cpu_tiny_fp32-bf16_gan_int_cls.json").read_text())
    assert doc["rows"][0]["method"] == "gan_int_cls"
    text = (tmp_path / "speed.md").read_text()
    assert "## cpu, tiny setting" in text and "not measured yet" in text


def _replays_then_stalls(real):
    """``phase_rows`` that replays each (method, mode)'s real rows, timed once beforehand without a limit, and hangs
    after GAN-INT-CLS's first fp32 row (as a stuck step or compile would). Replayed rows take no time, so only the
    hang meets the row limit, however slow or loaded the machine that timed them (a fixed 10 s limit on real rows
    cut StackGAN's nchw rows too on a slower CPU)."""
    timed = {
        (method, mode): list(real(method, "tiny", mode, device="cpu", warmup=1, steps=1))
        for method in ("stackgan", "gan_int_cls")
        for mode in ("fp32", "nchw")
    }

    def rows(method, setting, mode, **kwargs):
        for row in timed[(method, mode)]:
            yield row
            if (method, mode) == ("gan_int_cls", "fp32"):
                time.sleep(600)

    return rows


def test_a_row_past_its_limit_is_cut_and_the_finished_rows_are_on_disk(monkeypatch, tmp_path):
    from benchmark.pipeline.bench import suite

    monkeypatch.setattr(suite, "phase_rows", _replays_then_stalls(suite.phase_rows))
    out, seen = tmp_path / "bench.json", []

    def save(doc):
        suite.save_document(doc, out, LEADERBOARDS, record=False)
        seen.append(json.loads(out.read_text()))  # what a run killed right now would leave

    start = time.perf_counter()
    doc = run_suite(
        ("stackgan", "gan_int_cls"), "tiny", ("fp32", "nchw"), steps=1, warmup=1, evaluation=False, device="cpu",
        row_limit_s=2, save=save,
    )  # fmt: skip
    assert time.perf_counter() - start < 60  # one cut at 2 s, not a sleep of 600 s
    assert [(r["method"], r["stage"]) for r in seen[1]["rows"]] == [("stackgan", 1), ("stackgan", 2)]
    assert not seen[1]["complete"] and seen[1]["protocol"]["row_limit_s"] == 2
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(doc)) and on_disk["complete"]
    assert [(r["method"], r["mode"]) for r in on_disk["rows"]] == (
        [("stackgan", "fp32")] * 2 + [("stackgan", "nchw")] * 2 + [("gan_int_cls", "fp32"), ("gan_int_cls", "nchw")]
    )  # GAN-INT-CLS's phase before the hang is kept, and the run went on after the cut
    assert on_disk["skipped"] == [
        {"method": "gan_int_cls", "mode": "fp32", "why": "cut at its 2 s limit; 1 phase row(s) kept"}
    ]
    schedule = {(s["method"], s["mode"]) for s in on_disk["schedule"]}  # only for what was timed whole
    assert schedule == {("stackgan", "fp32"), ("stackgan", "nchw"), ("gan_int_cls", "nchw")}
    reference = report.load_reference(LEADERBOARDS / "speed_reference.toml")
    assert "Cut short" in report.render_markdown([seen[1]], reference)
    assert "Cut short" not in report.render_markdown([on_disk], reference)


def test_a_bench_killed_mid_way_leaves_its_finished_rows(xbench, monkeypatch, tmp_path):
    from benchmark.pipeline.bench import suite

    real = suite.phase_rows

    def killed_at_the_second_method(method, *args, **kwargs):
        if method == "gan_int_cls":
            raise KeyboardInterrupt  # what the device call's time limit does to the process, near enough
        yield from real(method, *args, **kwargs)

    monkeypatch.setattr(suite, "phase_rows", killed_at_the_second_method)
    out = tmp_path / "bench.json"
    args = ("--method", "stackgan", "--method", "gan_int_cls", "--modes", "fp32", "--steps", 1, "--warmup", 1)
    result = xbench("bench", *args, "--no-evaluation", "--row-limit", 60, "--out", out)
    assert result.exit_code != 0
    doc = json.loads(out.read_text())
    assert not doc["complete"] and doc["protocol"]["row_limit_s"] == 60
    assert [(r["method"], r["stage"]) for r in doc["rows"]] == [("stackgan", 1), ("stackgan", 2)]
    assert doc["schedule"] == [{"method": "stackgan", "mode": "fp32", "projected_s": pytest.approx(
        sum(r["projected_s"] for r in doc["rows"]))}]  # fmt: skip
