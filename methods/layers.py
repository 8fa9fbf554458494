"""Layers and losses shared by several methods (XRayGAN and the baselines that reuse its pieces)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.seeds import derive_seed


class ResBlock(nn.Module):
    """conv3x3 - activation - conv3x3, plus the input (no normalisation, as XRayGAN's reference)."""

    def __init__(self, channels: int, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            act,
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x):
        return x + self.body(x)


class InstanceNorm(nn.Module):
    """Instance normalisation without affine parameters or running statistics (= ``nn.InstanceNorm2d(c)``).

    Written out because the native op copies a channels_last input to NCHW (it runs batch norm on a
    [1, B*C, H, W] view) and its double backward, which every WGAN-GP critic step needs, is slow: on a
    64 px critic with the gradient penalty this is 1.7x faster on the CPU. Statistics in fp32 under bf16.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
        return ((x.float() - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)


def check_discriminator_loss(method: str, loss: str, norm: str) -> None:
    """The loss and normalisation options the baselines share, checked alike."""
    if loss not in ("bce", "wgan_gp"):
        raise ValueError(f"{method}: loss must be 'bce' or 'wgan_gp', not {loss!r}")
    if norm not in ("batch", "instance"):
        raise ValueError(f"{method}: d_norm must be 'batch' or 'instance', not {norm!r}")
    if loss == "wgan_gp" and norm == "batch":
        raise ValueError(
            f"{method}: loss 'wgan_gp' needs d_norm 'instance' (batch norm mixes the samples "
            "whose gradients the penalty takes one by one)"
        )


def discriminator_norm(kind: str, channels: int) -> nn.Module:
    """Batch norm (BCE discriminators, as the originals) or instance norm (WGAN-GP critics: a per-sample
    gradient penalty is wrong when batch statistics mix the samples)."""
    return nn.BatchNorm2d(channels) if kind == "batch" else InstanceNorm()


class BaseGenerator(nn.Module):
    """XRayGAN's basic generator G^(1): a vector as a 1x1 map, then log2(size) Res-Upsample blocks
    (residual block, bilinear x2, conv3x3 halving the channels, LeakyReLU), then conv1x1 + tanh.

    Reference: UCSD-AI4H/XRayGAN ``models/Decoder.py`` baseDecoderv3 (no FC, no noise, no normalisation);
    7,856,657 parameters at in_dim 512 and size 32. GAN-INT-CLS uses it with 8 blocks (size 256).
    """

    def __init__(self, in_dim: int, size: int = 32):
        super().__init__()
        layers, c = [], in_dim
        for _ in range(int(math.log2(size))):
            layers += [
                ResBlock(c, nn.LeakyReLU(0.2)),
                nn.Upsample(scale_factor=2, mode="bilinear"),
                nn.Conv2d(c, max(c // 2, 1), 3, padding=1, bias=False),
                nn.LeakyReLU(0.2),
            ]
            c = max(c // 2, 1)
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(c, 1, 1), nn.Tanh())

    def forward(self, vector: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(vector[:, :, None, None]))  # [B, 1, size, size]


def he_init(module: nn.Module) -> None:
    """He et al.'s init for LeakyReLU(0.2) on every conv and linear (biases 0), each residual branch's last conv
    zeroed (every ResBlock starts as the identity). With PyTorch's default init a norm-free Res-Upsample
    generator's output is nearly constant whatever its input (the signal shrinks at every block: to 1e-5 at
    256 px), so no gradient tells the text apart: measured at the tiny setting, GAN-INT-CLS gave saturated,
    report-blind images and XRayGAN's L2 warm-up a report vector that varied by 0.006 across reports."""
    module.apply(_he_init_one)  # apply's order (children first): the draws of GAN-INT-CLS's records
    for m in module.modules():
        if isinstance(m, ResBlock):
            nn.init.zeros_(m.body[-1].weight)


def _he_init_one(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def mismatched(condition: torch.Tensor, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each case's mismatching condition (the previous case's: the batch rolled by one) and a mask [B] that is
    0 where the two reports are identical token for token (a true match, left out of a mismatch term)."""
    return condition.roll(1, dims=0), (flat != flat.roll(1, dims=0)).any(dim=1).float()


def discriminator_term(scores: torch.Tensor, real: bool, kind: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """One D term: BCE against the label, or the WGAN critic's -score (real) / +score (fake); weighted mean."""
    s = scores.float()
    if kind == "bce":
        per = F.binary_cross_entropy_with_logits(s, torch.full_like(s, float(real)), reduction="none")
    else:
        per = -s if real else s
    if weight is None:
        return per.mean()
    return (per * weight).sum() / weight.sum().clamp(min=1)


def gradient_penalty(scores: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """(||d score / d input|| - 1)^2 per sample, averaged (Gulrajani et al.)."""
    (grad,) = torch.autograd.grad(scores.float().sum(), inputs, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1).square().mean()


def interpolates(real, fake) -> list[torch.Tensor]:
    """Random points between real and fake images (one alpha per sample, shared by the views)."""
    alpha = torch.rand(real[0].shape[0], 1, 1, 1, device=real[0].device)
    return [(alpha * r + (1 - alpha) * f.detach()).requires_grad_(True) for r, f in zip(real, fake)]


def wgan_gp_loss(scores: torch.Tensor, interp: torch.Tensor, gp_weight: float) -> torch.Tensor:
    """WGAN-GP critic loss E[D(fake)] - E[D(real)] + lambda E[(||grad D(interp)|| - 1)^2] (Gulrajani et al.).

    ``scores`` are the critic's outputs on [real; fake; interp] stacked in that order. The interpolates must
    have had a forward pass of their own: differentiating a slice of a batched pass back-propagates (twice,
    with the penalty's double backward) through the whole batch.
    """
    s_real, s_fake, s_interp = scores.float().chunk(3)
    return s_fake.mean() - s_real.mean() + gp_weight * gradient_penalty(s_interp, interp)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's init (GAN-INT-CLS and StackGAN v1 use it): weights N(0, 0.02), batch-norm scales N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def case_noise(seeds: Sequence[int], dim: int, device: torch.device) -> torch.Tensor:
    """z per case, [B, dim]: drawn on the CPU from a generator seeded by the case seed alone, so a case's noise
    is the same whatever batch it is in and on whatever device."""
    rows = [torch.randn(dim, generator=torch.Generator().manual_seed(derive_seed(s))) for s in seeds]
    return torch.stack(rows).to(device)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)), averaged over elements (the conditioning augmentation of StackGAN and AttnGAN)."""
    return -0.5 * (1 + logvar.float() - mu.float().square() - logvar.float().exp()).mean()
