"""bf16 autocast on the CPU (``MethodConfig.cpu_bf16``): a recorded setting that older records did not have."""

import json
import math

import torch

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
