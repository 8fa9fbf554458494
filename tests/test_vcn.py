"""The View Consistency Network: architecture, training, the generator's loss and checkpoints."""

import copy
import hashlib

import numpy as np
import pytest
import torch

from benchmark.core.checkpoints import save_checkpoint
from benchmark.core.errors import XbenchError
from methods.base import count_parameters
from methods.vcn import VCN, VCNConfig, _resized, consistency_loss, evaluate_vcn, freeze, load_vcn, save_vcn, train_vcn

# The official Classifinet(resnet18) incl. its 1-channel conv1, per the reference notes: ~11,236,033.
REFERENCE_PARAMS = 11_236_033
PARAMS = 11_236_033  # counted: ResNet-18 without fc and with a 1-ch conv1 (11,170,240) + 65,664 + 129


def synthetic_pairs(n: int, seed: int, size: int = 32) -> np.ndarray:
    """uint8 [n, 2, size, size]: both views of a case show the same blob (position, radius, intensity),
    each with its own noise; cases differ in the blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, 2, size, size), np.uint8)
    for i in range(n):
        cx, cy = rng.uniform(6, size - 6, 2)
        radius, amp = rng.uniform(3, 7), rng.uniform(80, 160)
        blob = amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
        for view in range(2):
            out[i, view] = (40 + blob + rng.normal(0, 12, (size, size))).clip(0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def small_cfg():
    return VCNConfig(epochs=6, batch_size=16, lr=0.01, lr_step_epochs=3)


@pytest.fixture(scope="module")
def trained(small_cfg):
    return train_vcn(synthetic_pairs(64, seed=0), 32, small_cfg, seed=0)


def test_shapes_and_parameter_count():
    vcn = VCN().eval()
    assert count_parameters(vcn) == PARAMS
    assert abs(PARAMS - REFERENCE_PARAMS) / REFERENCE_PARAMS < 1e-3
    f, lat = torch.rand(3, 1, 32, 32) * 2 - 1, torch.rand(3, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert vcn(f, lat).shape == (3,)
        emb = vcn.embed(f)
        assert emb.shape == (3, 128)
        torch.testing.assert_close(emb.norm(dim=1), torch.full((3,), 10.0))
        p = vcn.p_same(f, lat)
        assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
        assert vcn(torch.zeros(2, 1, 48, 40), torch.zeros(2, 1, 48, 40)).shape == (2,)  # any size >= 32
        x = torch.rand(2, 1, 64, 64).contiguous(memory_format=torch.channels_last)
        cl = vcn.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = cl(x, x.flip(-1))
        assert out.shape == (2,) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_head_is_a_weighted_l1_distance():
    torch.manual_seed(0)
    vcn = freeze(VCN())
    f, lat = torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        same = vcn(f, f)
        assert torch.equal(same, vcn.head.bias.expand(4))
        torch.testing.assert_close(vcn(f, lat), vcn(lat, f), rtol=0, atol=1e-6)


def test_training_learns_held_out_consistency(trained):
    result = evaluate_vcn(trained, synthetic_pairs(64, seed=1), 32, seed=0)
    # runs over 5 training seeds gave held-out accuracy 0.66-0.80 and a P(same) gap of 0.31-0.42
    assert result["accuracy"] > 0.6
    assert result["p_same_matched"] > result["p_same_mismatched"] + 0.15
    assert not trained.training and not any(p.requires_grad for p in trained.parameters())


def test_training_is_deterministic(trained, small_cfg):
    again = train_vcn(synthetic_pairs(64, seed=0), 32, small_cfg, seed=0)
    for (name, a), b in zip(trained.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_training_logs_and_continues_from_init(trained):
    logged = []
    init = copy.deepcopy(trained)  # the next stage re-tunes the same network at a higher resolution
    tuned = train_vcn(
        synthetic_pairs(16, seed=2, size=80),
        64,
        VCNConfig(epochs=2, batch_size=8),
        seed=1,
        init=init,
        log=lambda *a: logged.append(a),
    )
    assert tuned is init and not tuned.training and not any(p.requires_grad for p in tuned.parameters())
    assert [e for e, _, _ in logged] == [0, 1] and all(loss > 0 and 0 <= acc <= 1 for _, loss, acc in logged)
    assert not torch.equal(tuned.head.weight, trained.head.weight)


def test_images_are_resized_with_antialiasing():
    checker = (np.indices((128, 128)).sum(0) % 2 * 255).astype(np.uint8)  # 1-px checkerboard
    small = _resized(np.stack([checker, 255 - checker])[None], 32, "cpu")
    assert small.shape == (1, 2, 32, 32) and small.dtype == torch.uint8
    assert (small.float() - 127.5).abs().max() < 2  # nearest would keep 0 / 255


def test_consistency_loss_grads_reach_images_only(trained):
    f = (torch.rand(3, 1, 32, 32) * 2 - 1).requires_grad_(True)
    lat = (torch.rand(3, 1, 32, 32) * 2 - 1).requires_grad_(True)
    loss = consistency_loss(trained, f, lat)
    assert loss.ndim == 0
    expected = -torch.log(trained.p_same(f, lat)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert f.grad is not None and f.grad.abs().sum() > 0 and lat.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in trained.parameters())
    with pytest.raises(ValueError, match="frozen"):
        consistency_loss(VCN(), f, lat)


def test_save_load_round_trip(trained, tmp_path):
    path = tmp_path / "vcn" / "vcn32.pt"
    digest = save_vcn(trained, path)
    assert (tmp_path / "vcn" / "vcn32.pt.sha256").read_text().split()[0] == digest
    assert save_vcn(trained, tmp_path / "again.pt") == digest
    loaded = load_vcn(path, sha256=digest)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x, y = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x, y), trained(x, y))
    assert save_vcn(loaded, tmp_path / "third.pt") == digest


def test_load_refuses_bad_files(trained, tmp_path):
    path = tmp_path / "vcn.pt"
    digest = save_vcn(trained, path)
    wrong = "0" * 64
    with pytest.raises(XbenchError, match=f"{wrong}.*{digest}"):
        load_vcn(path, sha256=wrong)
    (tmp_path / "vcn.pt.sha256").write_text(f"{wrong}  vcn.pt\n")  # the sidecar is checked too
    with pytest.raises(XbenchError, match="sha256"):
        load_vcn(path)
    pickled = tmp_path / "pickled.pt"
    torch.save(_Pickled(), pickled)
    with pytest.raises(XbenchError, match="no recorded sha256"):  # a file xbench did not write
        load_vcn(pickled)
    with pytest.raises(XbenchError, match="pickled code"):  # even with the right sha256: never unpickled
        load_vcn(pickled, sha256=hashlib.sha256(pickled.read_bytes()).hexdigest())
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(XbenchError, match="not a torch zip checkpoint"):
        load_vcn(tmp_path / "garbage.pt", sha256=hashlib.sha256(b"not a checkpoint").hexdigest())
    save_checkpoint({"weights": torch.ones(3)}, tmp_path / "other.pt")  # tensors, but not a VCN
    with pytest.raises(XbenchError, match="does not fit the VCN"):
        load_vcn(tmp_path / "other.pt")
    with pytest.raises(XbenchError, match="does not exist"):
        load_vcn(tmp_path / "missing.pt")


class _Pickled:
    """A non-tensor object: loading it would need this module's code."""

    def __init__(self):
        self.weights = torch.ones(3)


def roc_area(pos: np.ndarray, neg: np.ndarray) -> float:
    """The area under the ROC curve by the trapezoid rule over every threshold (an independent route)."""
    thresholds = np.r_[np.inf, np.unique(np.r_[pos, neg])[::-1]]
    tpr = [(pos >= t).mean() for t in thresholds]
    fpr = [(neg >= t).mean() for t in thresholds]
    return float(np.trapezoid(tpr, fpr))


def test_auroc_is_the_mann_whitney_statistic():
    from methods.vcn import auroc

    assert auroc(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2])) == 1.0
    assert auroc(torch.tensor([0.5]), torch.tensor([0.5])) == 0.5  # a tie counts half
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 40).round(1), rng.normal(0, 1, 30).round(1)  # rounded: ties included
    expected = roc_area(pos, neg)
    assert auroc(torch.tensor(pos), torch.tensor(neg)) == pytest.approx(expected, abs=1e-12)
