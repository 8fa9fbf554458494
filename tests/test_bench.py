"""The throughput benchmark runs on the CPU at the tiny setting (GPU figures come from the device tool)."""

import dataclasses

import pytest

from benchmark.bench import time_stages
from methods.xraygan import Config


def test_time_stages_reports_every_gan_stage():
    cfg = dataclasses.replace(Config.tiny(), vcn=dataclasses.replace(Config.tiny().vcn, epochs=1))
    rows = time_stages("xraygan", cfg, image_size=64, warmup=1, steps=2, device="cpu")
    assert [(r["stage"], r["phase"], r["batch"]) for r in rows] == [(0, "gan", 32), (1, "gan", 32)]
    for r in rows:
        assert r["ms_per_step"] > 0 and r["pairs_per_s"] == pytest.approx(1000 * r["batch"] / r["ms_per_step"])
    assert all(r["device"] == "cpu" and r["peak_gib"] is None for r in rows)
