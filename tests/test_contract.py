"""The contract every registered method keeps: build at tiny(), fit on a few phantom cases, generate both
views (shape, dtype, range), deterministic for a seed, and a saved state that generates the same images."""

import numpy as np
import pytest
import torch

from benchmark.core.checkpoints import load_checkpoint, save_checkpoint
from methods import METHODS


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name, tiny_phantom, tmp_path):
    vocab, train, test = tiny_phantom
    cls = METHODS[name]
    method = cls(cls.Config.tiny(), vocab, image_size=64, device="cpu", seed=1)
    method.fit(train.subset(np.arange(16)), None, tmp_path / "run")
    tokens, seeds = test.tokens[:4], [11, 12, 13, 14]
    views = method.generate(tokens, seeds)
    for images in (views.frontal, views.lateral):
        assert images.shape == (4, 1, 64, 64) and images.dtype == torch.float32
        assert images.min() >= -1 and images.max() <= 1 and torch.isfinite(images).all()
    again = method.generate(tokens, seeds)
    assert torch.equal(again.frontal, views.frontal) and torch.equal(again.lateral, views.lateral)

    save_checkpoint(method.state_dict(), tmp_path / "final.pt")
    restored = cls(cls.Config.tiny(), vocab, image_size=64, device="cpu", seed=1)
    restored.load_state_dict(load_checkpoint(tmp_path / "final.pt"))
    reloaded = restored.generate(tokens, seeds)
    assert torch.equal(reloaded.frontal, views.frontal) and torch.equal(reloaded.lateral, views.lateral)
