"""Metric timings (pytest-benchmark): FID from cached features, SSIM at 256 px, Inception feature throughput.

Slow on a CPU, hence ``slow``: ``pytest -m "slow and perf" --benchmark-enable tests/test_metrics_perf.py``.
"""

import numpy as np
import pytest
import torch

from metrics import fidelity
from metrics.frechet import frechet_distance
from metrics.ssim import ssim_scores

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.perf
@pytest.mark.slow
def test_fid_from_cached_features_1036x2048(benchmark):
    rng = np.random.default_rng(0)
    f1, f2 = rng.standard_normal((1036, 2048)), rng.standard_normal((1036, 2048)) + 0.1
    fid = benchmark(frechet_distance, f1, f2, DEVICE)
    assert fid > 0


@pytest.mark.perf
@pytest.mark.slow
def test_ssim_518_pairs_256(benchmark):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (518, 256, 256), dtype=np.uint8)
    fake = rng.integers(0, 256, (518, 256, 256), dtype=np.uint8)
    scores = benchmark.pedantic(ssim_scores, (fake, real), rounds=1, iterations=1)
    assert scores.shape == (518,)


@pytest.mark.perf
@pytest.mark.slow
def test_inception_features_throughput(benchmark):
    ex = fidelity.inception_extractor()
    module = ex.create(DEVICE)
    images = np.random.default_rng(0).integers(0, 256, (64, 256, 256), dtype=np.uint8)
    fidelity.extract(ex, module, images[:2], 2)  # warm-up
    feats = benchmark.pedantic(fidelity.extract, (ex, module, images, 32), rounds=1, iterations=1)
    benchmark.extra_info["images"] = len(images)
    benchmark.extra_info["device"] = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
    assert feats["pool"].shape == (64, 2048)
