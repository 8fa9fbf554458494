"""``metrics.evaluate`` end to end on the 64-px phantom (tiny extractor and evaluators), and its bad-input errors."""

import itertools
import math

import numpy as np
import pytest

import metrics
from benchmark.core.errors import XbenchError
from benchmark.core.resize import resident_images
from benchmark.data.datasets import DataConfig, get_dataset
from metrics import METRICS, EvalConfig, ImageSet, evaluate, fidelity, findings, get_metric, judges, view_consistency
from metrics.stats import centred_interval, macro_auroc
from tests.metrics_fixtures import random_set
from tests.tiny import tiny_eval

FAST = ("is_inception", "fid_inception", "kid_inception", "ssim")


@pytest.fixture(scope="module")
def phantom(tiny_phantom):
    """(reference, test) ImageSets with findings from the session's 64-px phantom (512 train, 64 test)."""
    _, train, test = tiny_phantom
    ds = get_dataset("phantom", DataConfig(image_size=64, max_cases=512))
    labels = {c.case_id: ds.finding_labels(c) for c in ds.splits().all}

    def as_set(data):
        return ImageSet(data.case_ids, data.pixels, tuple(labels[i] for i in data.case_ids))

    return as_set(train), as_set(test)


def noise_like(s: ImageSet, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(s.case_ids, rng.integers(0, 256, s.pixels.shape, dtype=np.uint8))


def check_block(out: dict) -> None:
    """Every value a plain float (or int N), every interval two floats, nothing rounded away."""
    assert set(out) == {"frontal", "lateral", "pair", "unavailable", "provenance"}
    assert out["provenance"]["protocol"] == {"metrics": metrics.PROTOCOL, "judges": judges.PROTOCOL}
    for scope in ("frontal", "lateral", "pair"):
        for key, value in out[scope].items():
            if key.endswith("_ci"):
                assert len(value) == 2 and all(type(v) is float for v in value) and value[0] <= value[1]
            elif key.endswith(("_n", "_classes", "_dropped", "_dropped_draws")):
                assert type(value) is int
            else:
                assert type(value) is float and math.isfinite(value), (key, value)


def test_registry_and_config():
    assert set(METRICS) == {
        "is_inception",
        "fid_inception",
        "kid_inception",
        "precision_inception",
        "recall_inception",
        "fid_chexnet",
        "is_chexnet",
        "ssim",
        "vc",
        "finding_auc",
        "fid_chestfilm",
        "kid_chestfilm",
        "density_chestfilm",
        "coverage_chestfilm",
        "copy_rate",
    }
    for name, spec in METRICS.items():
        assert spec.name == name and spec.protocol_note and set(spec.scope) <= {"frontal", "lateral", "pair"}
        # one entry is the whole metric: how it is computed, what it needs, its calibration rows
        assert callable(spec.compute) and isinstance(spec.needs_reference, bool)
        assert set(spec.calibration) <= {"real", "mismatched", "judge_auroc", "other_case"}
        if any(key.endswith("_real_floor") for key in spec.calibration.values()):
            assert spec.needs_reference, f"{name} draws its real floor from the reference images"
    assert get_metric("vc").scope == ("pair",) and not get_metric("fid_inception").higher_is_better
    with pytest.raises(XbenchError, match="choose one of: .*fid_inception"):
        get_metric("fid")
    with pytest.raises(XbenchError, match="unknown metric"):
        EvalConfig(metrics=("ssim", "psnr"))
    assert EvalConfig().metrics == tuple(METRICS) and tiny_eval().bootstrap < EvalConfig().bootstrap


def test_distribution_metrics_and_ssim(phantom, tiny_inception):
    _, test = phantom
    cfg = tiny_eval(metrics=FAST)
    same = evaluate(test, test, cfg, dataset="phantom")
    noise = evaluate(noise_like(test), test, cfg, dataset="phantom")
    check_block(same), check_block(noise)
    for view in ("frontal", "lateral"):
        assert same[view]["fid_inception"] == pytest.approx(0.0, abs=1e-6)
        assert noise[view]["fid_inception"] > 1.0
        assert noise[view]["kid_inception"] > same[view]["kid_inception"]
        assert same[view]["ssim"] == 1.0 and noise[view]["ssim"] < 0.2
        assert same[view]["fid_inception_n"] == same[view]["ssim_n"] == len(test)
        lo, hi = noise[view]["ssim_ci"]
        assert lo <= noise[view]["ssim"] <= hi
        assert "fid_inception_ci" in noise[view] and "kid_inception_ci" in noise[view]
    assert noise["provenance"]["fid_inception"]["extractor"] == "xbench-test-tiny"
    assert not same["unavailable"]


def test_real_features_cached_and_fid_kid_intervals_from_their_replicates(phantom, tiny_inception, monkeypatch):
    _, test = phantom
    calls = []
    extract = fidelity.extract
    monkeypatch.setattr(fidelity, "extract", lambda *a, **k: calls.append(1) or extract(*a, **k))
    cfg = tiny_eval(metrics=("fid_inception", "kid_inception"))
    evidence = {}
    first = evaluate(noise_like(test), test, cfg, dataset="phantom", evidence=evidence)
    assert len(calls) == 4  # fake + real, per view; FID and KID share the features
    second = evaluate(noise_like(test, 1), test, cfg, dataset="phantom")
    assert len(calls) == 6  # the real-image features came from the cache
    assert "fid_inception" in second["frontal"]
    for view in ("frontal", "lateral"):
        fid, kid = evidence[f"fid_inception/{view}"], evidence[f"kid_inception/{view}"]
        assert fid.shape == (cfg.bootstrap,) and kid.shape == (100,)
        assert first[view]["fid_inception_ci"] == list(centred_interval(first[view]["fid_inception"], fid)[0])
        assert first[view]["kid_inception"] == pytest.approx(kid.mean(), rel=1e-12)
    assert list(evidence["case_ids"]) == list(test.case_ids)


def test_vc_and_finding_auc(phantom, quick_judges):
    reference, test = phantom
    cfg = tiny_eval(metrics=("vc", "finding_auc"))
    reference = ImageSet(reference.case_ids[:96], reference.pixels[:96], reference.findings[:96])
    evidence = {}
    out = evaluate(noise_like(test), test, cfg, dataset="phantom", reference=reference, evidence=evidence)
    check_block(out)
    pair = out["pair"]
    for key in ("vc", "vc_deranged", "vc_real_matched", "vc_real_mismatched", "vc_evaluator_auroc"):
        assert 0 <= pair[key] <= 1 and pair[f"{key}_n"] == len(test) and f"{key}_ci" in pair
    for view in ("frontal", "lateral"):
        assert 0 <= out[view]["finding_auc"] <= 1 and 0 <= out[view]["finding_auc_real"] <= 1
        # the real films of another case (vc's floor derangement) against this case's labels
        other, scores = evidence["vc_derangement/pair"], evidence[f"finding_scores_real/{view}"]
        expected = macro_auroc(scores[other], evidence[f"finding_labels/{view}"])[0]
        assert out[view]["finding_auc_other_case"] == pytest.approx(expected, rel=1e-12)
    vc = out["provenance"]["vc"]
    assert vc["from_cache"] is False and vc["protocol"] == judges.PROTOCOL and "separable" in vc["judge"]
    again = evaluate(test, test, cfg, dataset="phantom", reference=reference)
    assert again["provenance"]["vc"]["from_cache"] and again["provenance"]["finding_auc"]["from_cache"]
    assert again["provenance"]["vc"]["sha256"] == vc["sha256"]
    assert again["pair"]["vc_real_matched"] == out["pair"]["vc_real_matched"]  # the same judge, reloaded
    # real images as the generated ones: their own pairs are the ceiling and their deranged pairs the floor
    assert again["pair"]["vc"] == again["pair"]["vc_real_matched"]
    assert again["pair"]["vc_deranged"] == again["pair"]["vc_real_mismatched"] < again["pair"]["vc"]


def test_a_judge_is_a_fixed_protocol_keyed_by_its_code(phantom, quick_judges, monkeypatch):
    """Run settings do not change the judge; an edit of the judge's source makes a new one."""
    reference, test = phantom
    reference = ImageSet(reference.case_ids[:64], reference.pixels[:64], reference.findings[:64])
    first = evaluate(test, test, tiny_eval(metrics=("vc",)), dataset="phantom", reference=reference)
    other_run = tiny_eval(metrics=("vc",), bootstrap=10, seed=5, batch_size=8)
    same = evaluate(test, test, other_run, dataset="phantom", reference=reference)
    assert (
        same["provenance"]["vc"]["from_cache"]
        and same["provenance"]["vc"]["sha256"] == first["provenance"]["vc"]["sha256"]
    )
    monkeypatch.setattr(judges, "source_hash", lambda *modules: "an-edited-judge")
    edited = evaluate(test, test, tiny_eval(metrics=("vc",)), dataset="phantom", reference=reference)
    assert not edited["provenance"]["vc"]["from_cache"]


def test_real_floor_and_precision_recall(phantom, tiny_inception):
    reference, test = phantom
    names = ("fid_inception", "kid_inception", "precision_inception", "recall_inception")
    out = evaluate(noise_like(test), test, tiny_eval(metrics=names), dataset="phantom", reference=reference)
    check_block(out)
    for view in ("frontal", "lateral"):
        v = out[view]
        # real vs real (disjoint cases, same N) is far closer than noise vs real, and noise is never recalled
        assert v["fid_inception_real_floor"] < v["fid_inception"] / 2 and v["fid_inception_real_floor_n"] == len(test)
        assert v["kid_inception_real_floor"] < v["kid_inception"]
        assert v["recall_inception"] < 0.1 < v["recall_inception_real_floor"]
    evidence = {}
    cfg = tiny_eval(metrics=names[2:])
    evaluate(noise_like(test), test, cfg, dataset="phantom", reference=reference, evidence=evidence)
    for name, view in itertools.product(names[2:], ("frontal", "lateral")):  # replicates on FID's half-sample plan
        assert evidence[f"{name}/{view}"].shape == (cfg.bootstrap,) and f"{name}_ci" in out[view]
    without = evaluate(noise_like(test), test, tiny_eval(metrics=names), dataset="phantom")
    assert "fid_inception_real_floor" not in without["frontal"] and "fid_inception" in without["frontal"]
    assert "reference" in without["provenance"]["fid_inception_real_floor"]["unavailable"]


def test_without_reference_or_weights_metrics_are_unavailable(phantom, monkeypatch, tmp_path):
    _, test = phantom
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no torch-fidelity weights in its cache
    cfg = tiny_eval(metrics=("is_inception", "fid_chexnet", "is_chexnet", "vc", "finding_auc", "ssim"))
    out = evaluate(test, test, cfg, dataset="phantom")
    assert set(out["unavailable"]) == {"is_inception", "fid_chexnet", "is_chexnet", "vc", "finding_auc"}
    assert "weights-inception-2015-12-05-6726825d.pth" in out["unavailable"]["is_inception"]
    assert "chexnet" in out["unavailable"]["fid_chexnet"] and "reference" in out["unavailable"]["vc"]
    for scope in ("frontal", "lateral", "pair"):
        assert not any(k.startswith(("is_", "fid_chexnet", "vc", "finding")) for k in out[scope])
    assert out["frontal"]["ssim"] == 1.0


def test_too_few_cases_is_unavailable_never_a_number(tiny_inception):
    one = random_set(1)
    out = evaluate(
        one, one, tiny_eval(metrics=("fid_inception", "kid_inception", "is_inception", "ssim")), dataset="phantom"
    )
    assert {"fid_inception", "kid_inception", "is_inception"} <= set(out["unavailable"])
    assert "at least" in out["unavailable"]["is_inception"] and "fid_inception" not in out["frontal"]


@pytest.mark.parametrize(
    "fake, real, message",
    [
        (random_set(4, ids=("a", "b", "c", "x")), random_set(4, ids=("a", "b", "c", "d")), "different cases"),
        (random_set(3, ids=("c", "b", "a")), random_set(3, ids=("a", "b", "c")), "different order"),
        (random_set(3, size=32), random_set(3, size=64), "evaluate at one size"),
        (random_set(0), random_set(0), "nothing to evaluate"),
    ],
)
def test_bad_pairs_of_sets(fake, real, message):
    with pytest.raises(XbenchError, match=message):
        evaluate(fake, real, tiny_eval(metrics=("ssim",)), dataset="phantom")


def test_bad_images():
    rng = np.random.default_rng(0)
    with pytest.raises(XbenchError, match="uint8"):
        ImageSet(("a",), rng.random((1, 2, 16, 16)).astype(np.float32))
    with pytest.raises(XbenchError, match="grayscale"):
        ImageSet(("a",), rng.integers(0, 256, (1, 2, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(XbenchError, match="grayscale"):
        ImageSet(("a",), rng.integers(0, 256, (1, 16, 16), dtype=np.uint8))
    with pytest.raises(XbenchError, match="case ids"):
        ImageSet(("a", "b"), rng.integers(0, 256, (1, 2, 16, 16), dtype=np.uint8))


def test_reference_must_not_hold_test_cases():
    s = random_set(3)
    with pytest.raises(XbenchError, match="also reference"):
        evaluate(s, s, tiny_eval(metrics=("ssim",)), dataset="phantom", reference=s)


def test_public_api():
    assert set(metrics.__all__) >= {"METRICS", "EvalConfig", "ImageSet", "MetricSpec", "evaluate", "get_metric"}


def test_non_square_images_are_refused_by_the_judges_resizer():
    wide = np.zeros((3, 64, 48), dtype=np.uint8)
    with pytest.raises(XbenchError, match="64x48 px .* not square"):
        view_consistency.p_same(view_consistency.PairJudge(32), wide, wide, 32)
    with pytest.raises(XbenchError, match="not square"):
        findings.predict(findings.FindingsJudge(32, 2), wide, 32)
    with pytest.raises(XbenchError, match="not square"):
        resident_images(np.zeros((1, 2, 30, 32), dtype=np.uint8), 32, "cpu")
