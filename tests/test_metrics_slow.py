"""The issue's sanity figures on phantom test images, with the real TF-Inception network (slow on a CPU)."""

import numpy as np
import pytest

from metrics import evaluate, fidelity
from metrics.frechet import frechet_distance
from tests.metrics_fixtures import phantom_sets
from tests.tiny import tiny_eval


@pytest.mark.slow
def test_real_halves_close_and_noise_far_with_inception():
    import torch

    _, test = phantom_sets(n_test=64)
    ex = fidelity.inception_extractor()
    module = ex.create(torch.device("cpu"))
    frontal = test.view("frontal")
    feats = fidelity.extract(ex, module, frontal, 32)["pool"]
    noise = np.random.default_rng(0).permutation(frontal.reshape(-1)).reshape(frontal.shape)[:32]
    halves = frechet_distance(feats[:32], feats[32:])
    far = frechet_distance(feats[:32], fidelity.extract(ex, module, noise, 32)["pool"])
    assert far > 5 * halves  # measured with 128 per half: 22.7 vs 510 (frontal)


@pytest.mark.slow
def test_vc_evaluator_separates_real_matched_from_mismatched():
    reference, test = phantom_sets(n_test=128)
    cfg = tiny_eval(metrics=("vc",), vc_epochs=10, vc_batch_size=64)
    out = evaluate(test, test, cfg, dataset="phantom", reference=reference)
    pair = out["pair"]
    assert pair["vc_evaluator_auroc"] > 0.6 and pair["vc_real_matched"] > pair["vc_real_mismatched"]
