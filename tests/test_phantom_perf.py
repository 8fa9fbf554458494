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
    # phantom-1, measured on this 2-core machine pinned to one core when idle: median ~43 ms for both views.
    # phantom-2, measured against phantom-1 in one process, interleaved, on the loaded machine (load ~10):
    # CPU time 1.06-1.10 x phantom-1's (median 103 vs 97 ms at that load), so ~46-47 ms when idle.
    assert np.median(times) <= 0.050, f"median {1000 * np.median(times):.1f} ms"
