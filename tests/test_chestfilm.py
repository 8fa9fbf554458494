"""The chest-film feature space (metrics.chestfilm): density and coverage against an independent computation, the
memorisation metric firing on copies and silent on real films, the copier floor that calibrates it, and the
user-supplied networks of eval.chestfilm (torchxrayvision's DenseNet-121, RAD-DINO) found offline, never
downloaded, and named with their sha256 beside every number."""

import importlib.util
import socket

import numpy as np
import pytest
import torch

from benchmark.core.errors import XbenchError
from benchmark.data.text import Tokens
from methods import get_method
from methods.base import PairedData
from metrics import EvalConfig, ImageSet, chestfilm_extractors, evaluate, weights
from metrics.chestfilm import PRDC_NEIGHBOURS, density_coverage, nearest
from metrics.chestfilm_extractors import RAD_DINO, XRV
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
    assert noise["provenance"]["fid_chestfilm"]["name"] == noise["provenance"]["copy_rate"]["name"] == "judge"


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


# ------------------------------------------------------------------------ user-supplied chest-film networks


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, empty xbench weights and torch.hub folders, and torchxrayvision's cache dir in tmp_path / "xrv"
    (the folder its ``get_weights`` looks in); a download attempt fails the test."""
    import torchxrayvision as xrv

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(xrv.utils, "download", refuse)
    monkeypatch.setenv("XBENCH_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(xrv.utils, "get_cache_dir", lambda: str(tmp_path / "xrv"))
    return tmp_path / "xrv"


@pytest.fixture
def xrv_file(offline):
    """A torchxrayvision DenseNet-121 with random weights, saved in the authors' format (a whole pickled model) under
    the file name ``densenet121-res224-all`` has in torchxrayvision's cache dir; (its path, the model)."""
    import torchxrayvision as xrv

    torch.manual_seed(0)
    net = xrv.models.DenseNet(weights=None, num_classes=len(xrv.models.model_urls["densenet121-res224-all"]["labels"]))
    net.eval()
    path = offline / weights.get_weights_spec(XRV).filename
    path.parent.mkdir(parents=True)
    torch.save(net, path)
    return path, net


def test_the_manifest_names_torchxrayvision_s_own_file():
    import torchxrayvision as xrv

    url = xrv.models.model_urls["densenet121-res224-all"]["weights_url"]
    assert weights.get_weights_spec(XRV).filename == url.rsplit("/", 1)[1]


def test_xrv_densenet_is_found_in_its_cache_dir_and_preprocessed_as_its_authors_do(xrv_file):
    import torchxrayvision as xrv

    path, net = xrv_file
    ex = chestfilm_extractors.load(XRV, torch.device("cpu"))
    films = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    got = ex.features(films, batch_size=2)
    assert got.shape == (3, 1024) and got.dtype == np.float64
    # The authors' own pipeline: xrv.utils.normalize to [-1024, 1024], then the model resizes to its 224 px itself.
    net.input_resolution = 224
    with torch.no_grad():
        expected = net.features2(torch.from_numpy(xrv.utils.normalize(films, 255))[:, None]).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)  # float32 convolutions, batches of 2 against 3
    assert ex.provenance["name"] == XRV and ex.provenance["sha256"] == weights.sha256_of(path)


def test_a_missing_xrv_file_is_one_line_saying_how_to_supply_it(offline):
    with pytest.raises(XbenchError) as err:
        chestfilm_extractors.load(XRV, torch.device("cpu"))
    message = str(err.value)
    assert "\n" not in message and weights.get_weights_spec(XRV).filename in message
    assert "xbench weights import PATH --as xrv-densenet121" in message


def test_each_chestfilm_number_names_its_extractor_and_sha256(phantom, xrv_file):  # noqa: F811
    path, _ = xrv_file
    reference, test = phantom
    reference = ImageSet(reference.case_ids[:24], reference.pixels[:24], reference.findings[:24])
    test = ImageSet(test.case_ids[:12], test.pixels[:12], test.findings[:12])
    cfg = tiny_eval(metrics=("fid_chestfilm", "copy_rate"), chestfilm=XRV, bootstrap=20)
    out = evaluate(noise_like(test), test, cfg, dataset="phantom", reference=reference)
    check_block(out)
    assert not out["unavailable"]
    for name in ("fid_chestfilm", "copy_rate"):
        assert out["provenance"][name]["name"] == XRV
        assert out["provenance"][name]["sha256"] == weights.sha256_of(path)
    same = evaluate(test, test, cfg, dataset="phantom", reference=reference)
    assert same["frontal"]["fid_chestfilm"] == pytest.approx(0.0, abs=1e-6)  # one set against itself


def test_eval_chestfilm_names_a_known_extractor():
    assert EvalConfig().chestfilm == "judge"
    with pytest.raises(XbenchError, match="rad-dino"):
        EvalConfig(chestfilm="radiodino")


def test_rad_dino_without_transformers_or_its_directory_is_one_line(offline, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else find_spec(name, *a)
    )
    with pytest.raises(XbenchError, match="needs the transformers package: pip install transformers"):
        chestfilm_extractors.load(RAD_DINO, torch.device("cpu"))
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "transformers" else find_spec(name, *a)
    )
    with pytest.raises(XbenchError) as err:
        chestfilm_extractors.load(RAD_DINO, torch.device("cpu"))
    message = str(err.value)
    assert "\n" not in message and str(weights.weights_dir() / "rad-dino") in message
    assert "copy or link a local snapshot of https://huggingface.co/microsoft/rad-dino" in message


def test_rad_dino_loads_a_local_dinov2_with_its_processor(offline, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=28, patch_size=14
    )
    torch.manual_seed(0)
    net = transformers.Dinov2Model(config).eval()
    processor = transformers.BitImageProcessor(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}, image_mean=[0.5] * 3, image_std=[0.25] * 3
    )
    directory = weights.weights_dir() / "rad-dino"
    net.save_pretrained(directory)
    processor.save_pretrained(directory)
    ex = chestfilm_extractors.load(RAD_DINO, torch.device("cpu"))
    films = np.random.default_rng(0).integers(0, 256, (3, 40, 40), dtype=np.uint8)
    got = ex.features(films, batch_size=2)
    assert got.shape == (3, 32)
    with torch.no_grad():
        rgb = [np.repeat(f[:, :, None], 3, axis=2) for f in films]
        expected = net(pixel_values=processor(images=rgb, return_tensors="pt")["pixel_values"]).pooler_output
    np.testing.assert_allclose(got, expected.double().numpy(), rtol=1e-4, atol=1e-5)
    files = sorted(p for p in directory.iterdir() if p.is_file())
    assert ex.provenance["sha256"] == chestfilm_extractors.directory_sha256(files) and ex.provenance["size"] == 28
