"""Evaluation does no work twice: repeated images go through the feature network once (issue 28: the dummy's
one mean image paid the 299 px Inception pass 1,036 times per evaluation). The timing case is ``perf``:
``pytest -m perf --benchmark-enable tests/test_evaluation_speed.py``."""

import numpy as np
import pytest
import torch

from metrics import fidelity
from tests.metrics_fixtures import tiny_inception_extractor


@pytest.fixture
def counted():
    """The tiny extractor's module, counting the images its forward pass sees."""
    ex = tiny_inception_extractor()
    module = ex.create(torch.device("cpu"))
    seen = []
    module.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    return ex, module, seen


def test_repeated_images_go_through_the_network_once(counted):
    ex, module, seen = counted
    rng = np.random.default_rng(0)
    distinct = rng.integers(0, 256, (4, 32, 32), dtype=np.uint8)
    images = distinct[[2, 0, 2, 2, 3, 0, 1, 2]]
    feats = fidelity.extract(ex, module, images, 3)
    assert sum(seen) == 4  # one pass per distinct image, not 8
    alone = fidelity.extract(ex, module, distinct, 3)
    for role in ex.layers:
        assert feats[role].shape[0] == len(images)
        np.testing.assert_allclose(feats[role], alone[role][[2, 0, 2, 2, 3, 0, 1, 2]], rtol=1e-5, atol=1e-6)


def test_a_set_without_repeats_runs_as_given(counted):
    ex, module, seen = counted
    images = np.random.default_rng(1).integers(0, 256, (7, 32, 32), dtype=np.uint8)
    feats = fidelity.extract(ex, module, images, 3)
    assert seen == [3, 3, 1]  # the batches as given, in order
    assert feats["pool"].shape == (7, 16)


@pytest.mark.perf
def test_dummy_features_of_518_identical_images(benchmark):
    """The small setting's dummy: 518 copies of one 64 px image through the real Inception network."""
    ex = fidelity.inception_extractor()
    module = ex.create(torch.device("cpu"))
    images = np.repeat(np.random.default_rng(0).integers(0, 256, (1, 64, 64), dtype=np.uint8), 518, axis=0)
    feats = benchmark.pedantic(fidelity.extract, (ex, module, images, 64), rounds=1, iterations=1)
    assert feats["pool"].shape == (518, 2048)
    assert benchmark.stats.stats.max < 10  # one image's pass; 518 of them took minutes on 2 cores


@pytest.mark.perf
def test_kid_subsets_at_the_small_setting(benchmark):
    """KID's 100 subsets of 259 of 518 cases, 2,048-d: the kernels once over all cases, not once per subset
    (measured 0.40 s against 11.5 s per call on the busy 2-core box; four calls per evaluation)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(518, 2048)), rng.normal(size=(518, 2048)) + 0.1
    values = benchmark.pedantic(fidelity.kid_subsets, (a, b), rounds=3, iterations=1)
    assert values.shape == (100,)
    assert benchmark.stats.stats.median < 3


def test_feature_networks_are_channels_last():
    """Their convolutions' weights in channels_last: oneDNN then keeps every activation in one layout (the 299 px
    Inception pass: 254 -> 170 ms an image on one thread; docs/speed_notes.md)."""
    module = fidelity.inception_extractor().create(torch.device("cpu"))
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


@pytest.mark.perf
def test_inception_features_of_distinct_images(benchmark):
    """128 distinct 64 px images through the real Inception network (a small evaluation passes 1,036): at most
    210 ms an image on one thread (channels_last measured 164-170, NCHW 247-254 on the 2-core box)."""
    torch.set_num_threads(1)
    ex = fidelity.inception_extractor()
    module = ex.create(torch.device("cpu"))
    images = np.random.default_rng(0).integers(0, 256, (128, 64, 64), dtype=np.uint8)
    fidelity.extract(ex, module, images[:64], 64)  # oneDNN's primitives for this shape
    feats = benchmark.pedantic(fidelity.extract, (ex, module, images, 64), rounds=1, iterations=1)
    assert feats["pool"].shape == (128, 2048)
    assert benchmark.stats.stats.max / 128 < 0.21
