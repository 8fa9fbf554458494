"""The chest-film feature space (metrics.chestfilm): density and coverage against an independent computation, the
memorisation metric firing on copies and silent on real films, and the copier floor that calibrates it."""

import numpy as np
import pytest
import torch

from benchmark.data.text import Tokens
from methods import get_method
from methods.base import PairedData
from metrics import ImageSet, evaluate
from metrics.chestfilm import PRDC_NEIGHBOURS, density_coverage, nearest
from tests.test_metrics_evaluate import check_block, noise_like, phantom  # noqa: F401 (a fixture)
from tests.tiny import tiny_eval

CHESTFILM = ("fid_chestfilm", "kid_chestfilm", "density_chestfilm", "coverage_chestfilm", "copy_rate")


def brute_density_coverage(fake: np.ndarray, real: np.ndarray, k: int) -> tuple[float, float]:
    """Naeem et al. 2020's definitions, written out with loops over samples (no library)."""
    radius = np.empty(len(real))
    for i, r in enumerate(real):
        d = np.sqrt(((real - r) ** 2).sum(axis=1))
        radius[i] = np.sort(d)[k]  # the k-th neighbour, itself at index 0
    inside = np.array([[np.sqrt(((f - r) ** 2).sum()) < radius[j] for j, r in enumerate(real)] for f in fake])
    return inside.sum() / (k * len(fake)), inside.any(axis=0).mean()


def test_density_and_coverage_match_their_definitions():
    rng = np.random.default_rng(0)
    real, same, collapsed = rng.normal(size=(60, 6)), rng.normal(size=(50, 6)), rng.normal(0.0, 0.05, size=(50, 6))
    for fake in (same, collapsed):
        assert density_coverage(fake, real) == pytest.approx(brute_density_coverage(fake, real, PRDC_NEIGHBOURS))
    assert density_coverage(same, real)[1] > 0.8 > 0.3 > density_coverage(collapsed, real)[1]


def test_nearest_is_the_brute_force_neighbour():
    rng = np.random.default_rng(1)
    queries, pool = rng.normal(size=(300, 5)), rng.normal(size=(40, 5))  # more queries than one chunk
    distance, index = nearest(queries, pool)
    full = np.sqrt(((queries[:, None] - pool[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(index, full.argmin(1))
    np.testing.assert_allclose(distance, full.min(1), rtol=1e-12)


def test_chestfilm_metrics_and_the_copy_rate(phantom, quick_judges):  # noqa: F811
    reference, test = phantom
    cfg = tiny_eval(metrics=CHESTFILM)
    evidence = {}
    noise = evaluate(noise_like(test), test, cfg, dataset="phantom", reference=reference, evidence=evidence)
    check_block(noise)
    # the test films' own training neighbours, as the "generated" set: copies of training films
    copies = ImageSet(test.case_ids, reference.pixels[: len(test)])
    copied = evaluate(copies, test, cfg, dataset="phantom", reference=reference)
    real = evaluate(test, test, cfg, dataset="phantom", reference=reference)
    for view in ("frontal", "lateral"):
        assert copied[view]["copy_rate"] == 1.0 and copied[view]["copy_rate_pixels"] == 1.0
        assert noise[view]["copy_rate"] == 0.0 and noise[view]["copy_rate_pixels"] == 0.0
        # real test films score their own share, at most the 1st percentile's (one film of 64 here)
        assert real[view]["copy_rate"] == real[view]["copy_rate_real"] <= 1 / len(test)
        # noise is far from the films in chest-film space; the real test films are near the real floor
        assert noise[view]["fid_chestfilm"] > 10 * real[view]["fid_chestfilm_real_floor"]
        assert real[view]["fid_chestfilm"] == pytest.approx(0.0, abs=1e-6)
        assert noise[view]["coverage_chestfilm"] < real[view]["coverage_chestfilm"]
        # the evidence names each sample's nearest training case and distance
        neighbours = evidence[f"copy_rate_neighbour/{view}"]
        assert len(neighbours) == len(test) and set(neighbours) <= set(reference.case_ids)
        assert evidence[f"copy_rate/{view}"].mean() == noise[view]["copy_rate"]
    assert "judge_sha256" in noise["provenance"]["copy_rate"]


def test_the_copier_returns_the_training_pair_of_the_nearest_report():
    vocab_words = ("<pad>", "<unk>", "<sep>", "heart", "normal", "effusion", "left", "right", "clear")
    vocab = type("V", (), {"__len__": lambda self: len(vocab_words)})()

    def tokens(*reports):
        flat = np.zeros((len(reports), 6), dtype=np.int64)
        for i, ids in enumerate(reports):
            flat[i, : len(ids)] = ids
        return Tokens(np.zeros((len(reports), 1, 1), np.int64), np.zeros((len(reports), 1, 1), np.int64), flat)

    train_reports = ([3, 4, 2, 8], [5, 6, 2, 5], [5, 7, 2, 5])  # normal heart; left effusion; right effusion
    pixels = np.stack([np.full((2, 8, 8), 10 * (i + 1), np.uint8) for i in range(3)])
    train = PairedData(("a", "b", "c"), tokens(*train_reports), pixels)
    copier = get_method("copier")(get_method("copier").Config(), vocab, image_size=8, device="cpu")
    copier.fit(train, None, None)
    queries = tokens([5, 7, 2], [3, 8], [6, 5, 5])
    np.testing.assert_array_equal(copier.nearest(queries), [2, 0, 1])
    views = copier.generate(queries, [0, 1, 2])
    expected = torch.as_tensor(pixels[[2, 0, 1], 0:1]).float() / 127.5 - 1
    torch.testing.assert_close(views.frontal, expected)
