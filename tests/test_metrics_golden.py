"""The maths of the metrics against independent computations: FID, KID, IS, SSIM, AUROC, bootstrap."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
import torch_fidelity
from skimage.metrics import structural_similarity
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from benchmark.core.errors import XbenchError
from metrics import fidelity
from metrics.base import Unavailable
from metrics.context import half_sample_plan
from metrics.frechet import frechet_distance, frechet_distance_from_stats, frechet_replicates
from metrics.ssim import ssim_scores
from metrics.stats import (
    auroc,
    bootstrap_indices,
    centred_interval,
    half_sample_indices,
    macro_auroc,
    mean_interval,
    percentile_interval,
    resampled,
)
from tests.metrics_fixtures import TINY, tiny_inception_extractor


def fid_scipy(x1, x2):
    """The textbook route: np.cov and scipy's sqrtm."""
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n1, n2, d", [(300, 260, 64), (40, 50, 64), (30, 90, 48)])
def test_frechet_matches_scipy_sqrtm(n1, n2, d):
    rng = np.random.default_rng(n1 + d)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    x1 = rng.standard_normal((n1, d)) @ mix
    x2 = rng.standard_normal((n2, d)) @ mix * 1.3 + 0.2
    ours, ref = frechet_distance(x1, x2), fid_scipy(x1, x2)
    # both float64; sqrtm of a singular (n < d) product is the less accurate of the two (~1e-10 relative)
    assert abs(ours - ref) / abs(ref) < 1e-6
    stats = [{"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)} for x in (x1, x2)]
    tf = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert abs(ours - tf) / abs(tf) < 1e-6  # torch-fidelity's eigvals(S1 S2) route
    assert (
        abs(frechet_distance_from_stats(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"]) - ref)
        < 1e-6 * ref
    )


def test_frechet_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((200, 32))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)  # eigen-solve round-off only


def kid_numpy(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written from the KID paper (Binkowski et al. 2018)."""
    d, m = x.shape[1], len(x)
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))  # noqa: E731
    return off(kxx) + off(kyy) - 2 * kxy.mean()


def test_kid_matches_numpy_with_subsets_of_half_the_cases():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((120, 16)), rng.standard_normal((120, 16)) * 1.2 + 0.1
    mean, std = fidelity.kid(x, y)
    # independent: torch-fidelity's subset draws (RandomState(2020).choice, without replacement) of 60 = N/2 cases
    draw = np.random.RandomState(2020)
    mmds = [
        kid_numpy(x[draw.choice(120, 60, replace=False)], y[draw.choice(120, 60, replace=False)]) for _ in range(100)
    ]
    assert mean == pytest.approx(np.mean(mmds), rel=1e-9) and std == pytest.approx(np.std(mmds), rel=1e-9)
    # the subsets differ, so the std is a spread (with subsets of N it was round-off, 3e-16)
    assert std > 0.05 * abs(mean)
    with pytest.raises(Unavailable, match="at least 4"):
        fidelity.kid(x[:3], y[:3])


def test_half_sample_intervals_match_numpy_and_hold_no_duplicates():
    rng = np.random.default_rng(11)
    n = 40
    x1, x2 = rng.standard_normal((n, 8)), rng.standard_normal((n, 8)) + 0.3
    index = half_sample_indices(n, 200, seed=3)
    assert index.shape == (200, 20) and all(len(set(row)) == 20 for row in index)  # without replacement
    point = frechet_distance(x1, x2)
    draws, left_out = resampled(lambda i: frechet_distance(x1[i], x2[i]), index)
    (lo, hi), dropped = centred_interval(point, draws)
    # independent: the textbook FID per draw, then numpy's percentiles, deviations from the median around the point
    ref = np.array([fid_scipy(x1[i], x2[i]) for i in index])
    q_lo, q_med, q_hi = np.percentile(ref, [2.5, 50, 97.5])
    assert lo == pytest.approx(point - (q_med - q_lo), rel=1e-6) and hi == pytest.approx(
        point + (q_hi - q_med), rel=1e-6
    )
    assert lo < point < hi and dropped == 0 and left_out == 0


def test_half_samples_give_the_spread_of_a_mean_over_all_n():
    """Half-sample means (without replacement) have the variance of the full-N mean: sigma^2 / N."""
    values = np.random.default_rng(12).normal(0, 1, 400)
    draws, _ = resampled(lambda i: values[i].mean(), half_sample_indices(400, 4000, seed=0))
    assert np.std(draws) == pytest.approx(np.std(values) / np.sqrt(400), rel=0.08)


def test_dropped_draws_and_classes_are_counted():
    (lo, hi), dropped = percentile_interval([1.0, np.nan, 2.0, np.inf, 3.0])
    assert dropped == 2 and 1.0 <= lo <= hi <= 3.0
    with pytest.raises(XbenchError, match="no finite"):
        percentile_interval([np.nan, np.nan])
    probs = np.array([[0.9, 0.1], [0.2, 0.5], [0.8, 0.7]])
    labels = np.array([[1, 0], [0, 0], [1, 0]], dtype=bool)  # class 1 has no positive
    assert macro_auroc(probs, labels) == (1.0, 1)
    draws, left_out = resampled(lambda i: macro_auroc(probs[i], labels[i]), np.array([[0, 1, 2], [0, 2, 2]]))
    assert left_out == 3 and np.isnan(draws[1])  # draw 2 has no negative of class 0 either


def is_by_hand(logits, splits=10, seed=2020):
    logits = logits[np.random.RandomState(seed).permutation(len(logits))]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for k in range(splits):
        part = p[k * len(p) // splits : (k + 1) * len(p) // splits]
        marginal = part.mean(0)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(marginal)), axis=1))))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_hand_computation():
    logits = np.random.default_rng(2).standard_normal((100, 7)) * 3
    mean, std = fidelity.inception_score(logits)
    ref_mean, ref_std = is_by_hand(logits)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-8)
    # closed forms: identical predictions give 1; confident ones lie between 1 and the number of classes
    assert fidelity.inception_score(np.zeros((50, 5)))[0] == pytest.approx(1.0)
    assert 1.5 < fidelity.inception_score(np.tile(np.eye(5) * 50, (20, 1)))[0] <= 5.0


def test_is_chexnet_is_xraygans_compute_is():
    """Against XRayGAN's compute_IS written out with scipy's entropy: raw sigmoid rows, contiguous N // 10 splits."""
    probs = 1 / (1 + np.exp(-np.random.default_rng(7).standard_normal((107, 14)) * 2))
    scores = []
    for k in range(10):
        part = probs[k * (107 // 10) : (k + 1) * (107 // 10)]
        py = part.mean(0)  # entropy() renormalises both arguments
        scores.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    mean, std = fidelity.xraygan_inception_score(probs)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12) and std == pytest.approx(np.std(scores), rel=1e-9)
    # the former recipe (mean of per-image normalised vectors over shuffled splits) is a different number
    logp = np.log(probs / probs.sum(1, keepdims=True))
    assert abs(fidelity.inception_score(logp)[0] - mean) > 1e-6


def test_precision_recall_match_numpy_and_see_a_collapse():
    rng = np.random.default_rng(8)
    real, fake = rng.standard_normal((60, 5)), rng.standard_normal((50, 5)) * 0.9

    def by_hand(fake, real, k=3):
        def radii(x):
            d = np.linalg.norm(x[:, None] - x[None], axis=-1)
            return np.sort(d, axis=1)[:, k]  # the k-th neighbour other than the point itself

        cross = np.linalg.norm(fake[:, None] - real[None], axis=-1)
        return (cross <= radii(real)[None]).any(1).mean(), (cross.T <= radii(fake)[None]).any(1).mean()

    # torch-fidelity averages in float32: the shares agree to its round-off
    assert fidelity.precision_recall(fake, real) == pytest.approx(by_hand(fake, real), abs=1e-6)
    collapsed = np.repeat(real[:1], 50, axis=0) + rng.standard_normal((50, 5)) * 1e-3
    precision, recall = fidelity.precision_recall(collapsed, real)
    assert recall < 0.1 and precision == 1.0


def test_precision_recall_replicates_are_the_metric_on_each_half_sample():
    rng = np.random.default_rng(9)
    real, fake = rng.standard_normal((40, 6)), rng.standard_normal((40, 6)) * 0.8
    collapsed = np.repeat(real[:1], 40, axis=0) + rng.standard_normal((40, 6)) * 1e-3
    index = half_sample_plan("phantom", [f"case{i}" for i in range(40)], 0, 30)
    # Points on a line 10 apart, each generated one 20 above its real one: exactly on that real point's 3-NN sphere
    # (radius 20 inside a run of neighbours), so the balls' edges decide (torch-fidelity counts them in).
    line = np.c_[np.arange(40) * 10.0, np.zeros(40)]
    edge = line + [0.0, 20.0]
    for f, r in ((fake, real), (collapsed, real), (edge, line)):  # 7 draws a chunk
        want = np.array([fidelity.precision_recall(f[i], r[i]) for i in index])
        # torch-fidelity averages in float32: the shares agree to its round-off
        np.testing.assert_allclose(
            fidelity.precision_recall_replicates(f, r, index, max_elements=7 * 20**2), want, atol=1e-6
        )


def test_ssim_matches_scikit_image_called_directly():
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (5, 40, 40), dtype=np.uint8)
    fake = np.clip(real + rng.normal(0, 30, real.shape), 0, 255).astype(np.uint8)
    ours = ssim_scores(fake, real)
    for f, r, s in zip(fake, real, ours):
        ref = structural_similarity(
            f.astype(float) / 255,
            r.astype(float) / 255,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert s == pytest.approx(ref, abs=1e-12)  # the same call: 11x11 is what sigma 1.5 gives
    assert ssim_scores(real, real) == pytest.approx(np.ones(5))


def test_auroc_matches_pairwise_count():
    rng = np.random.default_rng(4)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auroc(scores, labels) == pytest.approx(pairwise)
    assert np.isnan(auroc(scores, np.ones(60, bool)))
    probs = np.stack([scores, -scores], 1)
    assert macro_auroc(probs, np.stack([labels, labels], 1)) == (pytest.approx(0.5), 0)


def test_bootstrap_interval_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(5)
    widths = []
    for n in (50, 800):
        values = rng.normal(0.6, 0.1, n)
        (lo, hi), _ = mean_interval(values, bootstrap_indices(n, 1000, seed=0))
        assert lo < values.mean() < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(N): 4x narrower expected for 16x the cases


def test_pipeline_equals_torch_fidelity_calculate_metrics():
    """Our extraction (Gray3 + torch-fidelity extractor) + FD + KID = torch-fidelity's own calculate_metrics."""
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (40, 24, 24), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    ex = tiny_inception_extractor()
    module = ex.create(torch.device("cpu"))
    fa, fb = (fidelity.extract(ex, module, x, batch_size=16)["pool"] for x in (a, b))
    ref = torch_fidelity.calculate_metrics(
        input1=fidelity.Gray3(a),
        input2=fidelity.Gray3(b),
        fid=True,
        kid=True,
        prc=True,
        feature_extractor=TINY,
        kid_subset_size=20,  # N / 2, as metrics.fidelity.kid
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    # torch-fidelity computes on the float32 features, we on float64 copies of the same: the cubic kernel of
    # KID amplifies float32 round-off to ~4e-5 relative
    assert frechet_distance(fa, fb) == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert fidelity.kid(fa, fb)[0] == pytest.approx(ref["kernel_inception_distance_mean"], rel=2e-4)
    assert fidelity.precision_recall(fb, fa) == (pytest.approx(ref["precision"]), pytest.approx(ref["recall"]))


def test_frechet_replicates_equal_the_distance_of_each_subset():
    """The Gram route (one m x m eigen-solve per draw) against the direct FID of each half-sample."""
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=(40, 96)), rng.normal(size=(40, 96)) * 1.2 + 0.3
    index = half_sample_indices(40, 12, seed=3)
    direct = np.array([frechet_distance(x1[i], x2[i]) for i in index])
    np.testing.assert_allclose(frechet_replicates(x1, x2, index), direct, rtol=1e-6)


def test_kid_subsets_are_torch_fidelitys_kid():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(48, 64)), rng.normal(size=(48, 64)) + 0.2
    ref = kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=100, kid_subset_size=24, rng_seed=2020, verbose=False
    )
    values = fidelity.kid_subsets(a, b)
    assert values.mean() == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-12)
    assert values.std() == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-12)
