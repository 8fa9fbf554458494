"""Evaluation timing (``benchmark.pipeline.bench.evaluation``) and ``metrics.evaluate``'s per-metric ``timings``."""

import json
import os

import pytest

from benchmark.data.datasets import get_dataset
from benchmark.pipeline.bench.evaluation import take, time_evaluation
from metrics import evaluate
from tests.metrics_fixtures import random_set
from tests.tiny import tiny_eval

# Few cases: the judges' protocol (full train + val, held-out class selection) is shrunk by ``quick_judges``.
N_TEST, N_REFERENCE = 20, 60


def test_time_evaluation_tiny(tiny_inception, quick_judges, tmp_path, monkeypatch):
    user_cache = tmp_path / "user-cache"
    user_cache.mkdir()
    monkeypatch.setenv("XBENCH_CACHE_DIR", str(user_cache))
    monkeypatch.delenv("XBENCH_WEIGHTS_DIR", raising=False)

    r = time_evaluation("tiny", n_test=N_TEST, n_reference=N_REFERENCE, device="cpu")

    assert os.environ["XBENCH_CACHE_DIR"] == str(user_cache) and "XBENCH_WEIGHTS_DIR" not in os.environ
    assert list(user_cache.iterdir()) == []  # features and evaluators went to the temporary cache
    assert (r["setting"], r["method"], r["device"]) == ("tiny", "xraygan", "cpu")
    assert (r["n_test"], r["n_reference"], r["image_size"]) == (N_TEST, N_REFERENCE, 64)
    requested = set(tiny_eval().metrics)
    assert set(r["metrics"]) | set(r["unavailable"]) == requested
    assert not set(r["metrics"]) & set(r["unavailable"])
    # The tiny extractor has logits; vc and finding_auc are trained on the reference cases: all timed.
    assert {"is_inception", "fid_inception", "kid_inception", "ssim", "vc", "finding_auc"} <= set(r["metrics"])
    assert all(t > 0 for t in r["metrics"].values())
    assert r["generate_s"] > 0 and r["evaluate_s"] > 0
    assert r["total_s"] == pytest.approx(r["generate_s"] + r["evaluate_s"])
    assert sum(r["metrics"].values()) <= r["evaluate_s"]
    assert all(isinstance(why, str) and why for why in r["unavailable"].values())
    # Weights are still looked for in the user's folder, not in the temporary cache.
    if "fid_chexnet" in r["unavailable"]:
        assert str(user_cache / "weights") in r["unavailable"]["fid_chexnet"]
    json.dumps(r)


def test_take_cycles_with_unique_ids():
    splits = get_dataset("phantom").splits()
    cases = splits.val[:3]
    taken = take(cases, 7)
    ids = [c.case_id for c in taken]
    assert len(set(ids)) == 7 and ids[:3] == [c.case_id for c in cases]
    assert ids[3] == f"{cases[0].case_id}~1" and ids[6] == f"{cases[0].case_id}~2"
    assert taken[4].report == cases[1].report  # same report, new id
    assert not set(ids) & {c.case_id for c in splits.test}


def test_unknown_setting():
    with pytest.raises(ValueError, match="unknown setting 'huge'; choose one of: paper, small, tiny"):
        time_evaluation("huge")


def test_evaluate_timings_one_entry_per_computed_metric(tiny_inception):
    real, fake = random_set(8, seed=0), random_set(8, seed=1)
    # No reference: vc is unavailable and must get no time.
    cfg = tiny_eval(metrics=("fid_inception", "kid_inception", "ssim", "vc"), device="cpu")
    timings: dict = {}
    out = evaluate(fake, real, cfg, dataset="test", timings=timings)
    assert set(out["unavailable"]) == {"vc"}
    assert set(timings) == {"fid_inception", "kid_inception", "ssim"}
    assert all(isinstance(t, float) and t > 0 for t in timings.values())
    # Timing changes no number.
    assert evaluate(fake, real, cfg, dataset="test") == out
