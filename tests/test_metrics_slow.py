"""The issue's sanity figures on phantom test images, with the real TF-Inception network (slow on a CPU)."""

import numpy as np
import pytest

from metrics import EvalConfig, evaluate, fidelity
from metrics.frechet import frechet_distance
from tests.metrics_fixtures import phantom_sets


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
def test_judges_meet_the_quality_bars_on_phantom_at_64px():
    """The protocol's bars on the real test images, judges trained on the full train + val (minutes on a CPU)."""
    from benchmark.data.datasets import DataConfig, get_dataset
    from metrics import ImageSet

    ds = get_dataset("phantom", DataConfig(image_size=64))
    splits = ds.splits()
    pairs = [ds.images(splits.train), ds.images(splits.val)]
    cases = [c for p in pairs for c in p.cases]
    reference = ImageSet(
        tuple(c.case_id for c in cases), np.concatenate([p.pixels for p in pairs]), tuple(map(ds.finding_labels, cases))
    )
    real = ds.images(splits.test)
    test = ImageSet.of(real, ds.finding_labels)
    out = evaluate(
        test, test, EvalConfig(metrics=("vc", "finding_auc"), bootstrap=0), dataset="phantom", reference=reference
    )
    assert out["pair"]["vc_evaluator_auroc"] >= 0.95
    for view in ("frontal", "lateral"):
        assert out[view]["finding_auc_real"] >= 0.90 and out[view]["finding_auc_classes"] >= 8
