"""bf16 autocast on the CPU (``MethodConfig.cpu_bf16``): a recorded setting that older records did not have."""

import json
import math
from pathlib import Path

import pytest
import torch

from benchmark.pipeline.bench.training import phase_rows
from benchmark.pipeline.check.steps import probe
from benchmark.pipeline.config import load_config
from benchmark.pipeline.leaderboard import LEADERBOARDS
from methods.base import MethodConfig
from methods.training import autocast


def test_cpu_bf16_enters_the_run_id_only_when_set():
    fp32 = load_config("xraygan", "phantom", setting="tiny")
    bf16 = load_config("xraygan", "phantom", setting="tiny", sets=["model.cpu_bf16=true"])
    record = json.loads((LEADERBOARDS / "records" / "phantom" / "xraygan_full_tiny_s0.json").read_text())
    assert fp32.config_hash == record["config_hash"]  # made before the field existed, in fp32: still its run
    assert bf16.config_hash != fp32.config_hash and bf16.to_dict()["model"]["cpu_bf16"] is True


def test_autocast_follows_the_config_per_device():
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.randn(1, 1, 8, 8)
    cases = ((None, torch.float32), (MethodConfig(), torch.float32), (MethodConfig(cpu_bf16=True), torch.bfloat16))
    for precision, dtype in cases:
        with autocast(torch.device("cpu"), precision):
            assert conv(x).dtype == dtype
    assert MethodConfig(bf16=True, cpu_bf16=False).autocasts(torch.device("cuda"))


def test_cpu_bf16_reaches_every_training_step_of_xraygan():
    """The first steps of each phase (the steps layer's probe) under ``cpu_bf16``: finite, and off the fp32
    losses by more than rounding of one kernel path could explain (that layer's first-step tolerance is ~1e-5)."""
    fp32 = probe(load_config("xraygan", "phantom", setting="tiny"))
    bf16 = probe(load_config("xraygan", "phantom", setting="tiny", sets=["model.cpu_bf16=true"]))
    assert fp32.keys() == bf16.keys()
    for phase in fp32:
        first_fp32, first_bf16 = fp32[phase][0], bf16[phase][0]
        assert all(math.isfinite(v) for step in bf16[phase] for v in step.values())
        gaps = {k: abs(first_bf16[k] - first_fp32[k]) / max(abs(first_fp32[k]), 1e-6) for k in first_fp32}
        assert max(gaps.values()) > 1e-4, (phase, gaps)


@pytest.mark.perf
def test_cpu_bf16_speeds_up_the_small_gan_step():
    """XRayGAN's stage-1 GAN step at the small setting (64 px, batch 32), fp32 against bf16 autocast in one run, one
    thread: bf16 at least 1.25x (measured 1.47x on the 2-core AVX-512 BF16 box: 1,793 -> 1,217 ms a step).
    Skipped where the CPU has no native bf16 (oneDNN emulates it there, slower than fp32)."""
    if "avx512_bf16" not in Path("/proc/cpuinfo").read_text() and "amx_bf16" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("no native bf16 on this CPU")
    torch.set_num_threads(1)
    ms = {
        mode: [r for r in phase_rows("xraygan", "small", mode, device="cpu", warmup=2, steps=5)][-1]["ms_per_step"]
        for mode in ("fp32", "bf16")
    }
    assert ms["fp32"] / ms["bf16"] > 1.25, ms
