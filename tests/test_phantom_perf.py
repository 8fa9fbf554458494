"""Render time of the thorax phantom: both views of one case at 256 px on one CPU core."""

import time

import numpy as np
import pytest

from benchmark.data.phantom import render_case
from benchmark.data.reports import Finding

FINDINGS = [Finding.parse("Pleural Effusion/right/small"), Finding.parse("Cardiomegaly/mild")]


@pytest.mark.perf
def test_render_both_views_256(benchmark):
    out = benchmark(render_case, "perf-case", FINDINGS, size=256)
    assert out.frontal.shape == out.lateral.shape == (256, 256)


@pytest.mark.perf
def test_median_render_time_at_most_50ms():
    render_case("warm-up", FINDINGS)
    times = []
    for k in range(20):
        t0 = time.perf_counter()
        render_case(f"perf-{k}", FINDINGS, size=256)
        times.append(time.perf_counter() - t0)
    # Measured on this 2-core machine pinned to one core, nothing else running: phantom-2.1 as first written,
    # median 60-84 ms; after the tube projection was restricted to the rays that meet each tube and a few
    # smaller savings (the same bytes: all 2,585 cases at 64 px and 300 at 256 px re-render identical),
    # 0.78-0.84x the old code interleaved in one process (40-60 cases), 46-77 ms
    # in absolute terms: the machine's speed drifts by up to 1.6x between minutes, and this bar passes on a
    # quiet minute (pytest-benchmark median 47.9 ms) and fails on a slow one (76 ms). Read a failure against
    # the old code measured in the same minute, not as a regression by itself.
    assert np.median(times) <= 0.050, f"median {1000 * np.median(times):.1f} ms"
