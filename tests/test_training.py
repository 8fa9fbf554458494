"""The shared training infrastructure: seeds, batches, on-device resizing, divergence and checkpoints."""

import numpy as np
import pytest
import torch

from benchmark.core.checkpoints import load_checkpoint, save_checkpoint
from benchmark.core.pixels import resident_images
from benchmark.core.seeds import derive_seed
from benchmark.errors import XbenchError
from benchmark.images import resize
from methods.base import PairedData
from methods.dummy import Dummy
from methods.training import DivergenceGuard, TrainingDiverged, epoch_batches


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "vcn", 1) == derive_seed(0, "vcn", 1) != derive_seed(0, "vcn", 2)
    assert 0 <= derive_seed(0, "init") < 2**63


def test_epoch_batches_cover_every_case_once():
    batches = list(epoch_batches(10, 4, seed=1))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert [b.tolist() for b in batches] == [b.tolist() for b in epoch_batches(10, 4, seed=1)]
    assert [len(b) for b in epoch_batches(10, 4, seed=1, drop_last=True)] == [4, 4]


def test_on_device_resize_matches_the_pipeline_resize():
    """torch's antialiased bicubic and PIL's (the data pipeline's) agree to a grey level or two."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 2, 96, 96), dtype=np.uint8)
    pixels[:, :, 20:60, 30:70] = 230  # an edge, where resamplers differ most
    ours = resident_images(pixels, 32, "cpu").numpy()
    pil = np.stack([[resize(view, 32) for view in case] for case in pixels])
    assert np.abs(ours.astype(int) - pil).max() <= 2
    assert resident_images(pixels, 96, "cpu").numpy().tolist() == pixels.tolist()  # same size: untouched


def test_divergence_guard_names_the_first_bad_step():
    guard = DivergenceGuard(torch.device("cpu"))
    guard.watch(1, {"l2": torch.tensor(0.5)})
    guard.check()
    guard.watch(2, {"l2": torch.tensor(float("inf")), "adv": torch.tensor(1.0)})
    guard.watch(3, {"l2": torch.tensor(float("nan")), "adv": torch.tensor(float("nan"))})
    with pytest.raises(TrainingDiverged, match=r"at step 2: loss l2 = inf"):
        guard.check()


def test_checkpoints_round_trip_and_refuse_corrupt_files(tmp_path):
    state = {"step": 3, "weights": {"w": torch.arange(4.0)}}
    digest = save_checkpoint(state, tmp_path / "ckpt" / "last.pt", sidecar=True)
    assert (tmp_path / "ckpt" / "last.pt.sha256").read_text().split()[0] == digest
    loaded = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["weights"]["w"], torch.arange(4.0))
    with pytest.raises(XbenchError, match=f"wrong sha256: expected {'0' * 64}, actual {digest}"):
        load_checkpoint(tmp_path / "ckpt" / "last.pt", sha256="0" * 64)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(XbenchError, match="corrupt checkpoint .*bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(XbenchError, match="missing.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_dummy_generates_the_mean_image_per_view(tiny_phantom, tmp_path):
    vocab, train, test = tiny_phantom
    method = Dummy(Dummy.Config.tiny(), vocab, image_size=64)
    method.fit(train, None, tmp_path)
    views = method.generate(test.tokens[:3], seeds=[0, 1, 2])
    expected = torch.from_numpy(train.pixels).float().div(127.5).sub(1).mean(0)
    torch.testing.assert_close(views.frontal[1, 0], expected[0])
    torch.testing.assert_close(views.lateral[2, 0], expected[1])
    restored = Dummy(Dummy.Config.tiny(), vocab, image_size=64)
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.generate(test.tokens[:1], [0]).frontal, views.frontal[:1])


def test_paired_data_checks_its_shapes(tiny_phantom):
    _, train, _ = tiny_phantom
    with pytest.raises(ValueError, match="must be uint8"):
        PairedData(train.case_ids, train.tokens, train.pixels.astype(np.float32))
    assert len(train.subset(np.arange(5))) == 5 and train.image_size == 64
