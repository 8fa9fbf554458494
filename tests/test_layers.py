"""Shared layers and losses: the written-out instance norm and XRayGAN's WGAN-GP critic loss."""

import dataclasses

import pytest
import torch
from torch import nn

from benchmark.pipeline.bench.training import FlopCount
from methods.layers import InstanceNorm, gradient_penalty
from methods.xraygan import Critics, critic_loss
from tests.tiny import tiny_model


def _penalised(norm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A tiny critic with a gradient penalty: loss, the input gradient and the conv weight's gradient."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1, bias=False), norm, nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 8))
    x = x.clone().requires_grad_(True)
    score = net(x).sum()
    (grad,) = torch.autograd.grad(score, x, create_graph=True)
    loss = score + (grad.flatten(1).norm(dim=1) - 1).square().mean()
    loss.backward()
    return loss.detach(), grad.detach(), net[0].weight.grad


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_instance_norm_equals_torch_including_the_double_backward(layout):
    x = (torch.randn(4, 1, 16, 16) * 3 + 1).contiguous(memory_format=layout)
    ours, theirs = _penalised(InstanceNorm(), x), _penalised(nn.InstanceNorm2d(8), x)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    y = InstanceNorm()(x)
    assert y.is_contiguous(memory_format=layout)  # no copy to NCHW and back
    torch.testing.assert_close(y.mean(dim=(2, 3)), torch.zeros(4, 1), rtol=0, atol=1e-5)


def _concatenated_critic_loss(critics, real, fake, c, gp_weight):
    """The formulation before: real, fake and interpolates through each critic as one batch of 3B."""
    alpha = torch.rand(real[0].shape[0], 1, 1, 1)
    interp = [(alpha * r + (1 - alpha) * f).requires_grad_(True) for r, f in zip(real, fake)]
    batch = [torch.cat([r, f, i]) for r, f, i in zip(real, fake, interp)]
    (scores,) = critics([(*batch, c.repeat(3, 1))])
    total = 0
    for s, i in zip(scores, interp):
        s_real, s_fake, s_interp = s.chunk(3)
        total = total + s_fake.mean() - s_real.mean() + gp_weight * gradient_penalty(s_interp, i)
    return total


def test_critic_loss_equals_the_concatenated_formulation_with_fewer_flops():
    cfg = tiny_model("xraygan")
    torch.manual_seed(1)
    critics = Critics(32, cfg.text.out_dim, cfg)
    real = tuple(torch.rand(6, 1, 32, 32) * 2 - 1 for _ in range(2))
    fake = tuple(torch.rand(6, 1, 32, 32) * 2 - 1 for _ in range(2))
    c = torch.randn(6, cfg.text.out_dim)
    results = []
    for loss_fn in (critic_loss, _concatenated_critic_loss):
        critics.zero_grad()
        torch.manual_seed(2)  # the same interpolation weights
        with FlopCount() as flops:
            loss = loss_fn(critics, real, fake, c, cfg.gp_weight)
            loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in critics.parameters()], flops.total))
    (ours, our_grads, our_flops), (theirs, their_grads, their_flops) = results
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    for a, b in zip(our_grads, their_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert our_flops < 0.8 * their_flops  # the penalty's double backward no longer spans real and fake


@pytest.mark.slow
def test_compiled_generators_train_like_eager(tiny_phantom, tmp_path):
    from methods.training import Phase
    from methods.xraygan import XRayGAN

    vocab, train, _ = tiny_phantom
    train = train.subset(range(16))
    losses, keys = [], []
    for compile_ in (False, True):
        cfg = dataclasses.replace(tiny_model("xraygan"), compile=compile_, vc_weight=0.0)
        method = XRayGAN(cfg, vocab, image_size=64, device="cpu", seed=3)
        stage = method.begin_stage(1, train, tmp_path / str(compile_))
        torch.manual_seed(4)
        step = method.train_step(stage, Phase(1, "gan", 1, 16), torch.arange(16))
        losses.append({k: float(v) for k, v in step.items()})
        keys.append(list(method.state_dict()["generators"]))
    assert keys[0] == keys[1]  # compiled in place: checkpoints load either way
    assert losses[0].keys() == losses[1].keys()
    for name in losses[0]:
        assert losses[1][name] == pytest.approx(losses[0][name], rel=1e-3, abs=1e-4), name
