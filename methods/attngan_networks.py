"""AttnGAN's networks: the attentional multi-stage generator per view and the per-stage discriminators, and the
losses that read their outputs. The method (training, sampling) and every departure from the reference code
are in ``methods/attngan.py``; the DAMSM is in ``methods/damsm.py``.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from methods.attngan_config import Config
from methods.damsm import VIEWS, down_block, masked_softmax
from methods.layers import discriminator_norm
from methods.text_encoders import get_text_encoder


# Shared pieces.
def weights_init(module: nn.Module) -> None:
    """The reference's init: orthogonal conv / linear weights, zero linear biases, BN weights ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.orthogonal_(m.weight, 1.0)
        elif isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, 1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


# Generators.
class UpBlock(nn.Sequential):
    """Nearest x2, conv3x3 -> 2 x out, BN, GLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(cin, 2 * cout), nn.BatchNorm2d(2 * cout))

    def forward(self, x):
        return F.glu(super().forward(x), dim=1)


class GLUResBlock(nn.Module):
    """conv3x3 -> 2C, BN, GLU, conv3x3 -> C, BN, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(channels, 2 * channels), nn.BatchNorm2d(2 * channels)
        self.conv2, self.bn2 = conv3x3(channels, channels), nn.BatchNorm2d(channels)

    def forward(self, x):
        return x + self.bn2(self.conv2(F.glu(self.bn1(self.conv1(x)), dim=1)))


class CondAugment(nn.Module):
    """Conditioning augmentation: Linear(D -> 4c) + GLU -> (mu, logvar) of c each; c = mu + exp(logvar/2) eps."""

    def __init__(self, text_dim: int, condition_dim: int):
        super().__init__()
        self.condition_dim = condition_dim
        self.fc = nn.Linear(text_dim, 4 * condition_dim)

    def forward(self, report: torch.Tensor, eps: torch.Tensor):
        mu, logvar = F.glu(self.fc(report), dim=1).split(self.condition_dim, dim=1)
        return mu + (0.5 * logvar).exp() * eps, mu, logvar


class InitStage(nn.Module):
    """[c, z] -> FC -> ngf x 4 x 4 (BN1d, GLU) -> up-blocks halving the channels -> gf x size x size."""

    def __init__(self, in_dim: int, gf_dim: int, size: int):
        super().__init__()
        blocks = int(math.log2(size // 4))
        self.ngf = gf_dim * 2**blocks  # the reference: 16 gf at 64 px
        self.fc = nn.Linear(in_dim, 2 * self.ngf * 16, bias=False)
        self.bn = nn.BatchNorm1d(2 * self.ngf * 16)
        self.up = nn.Sequential(*[UpBlock(self.ngf // 2**k, self.ngf // 2 ** (k + 1)) for k in range(blocks)])

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = F.glu(self.bn(self.fc(code)), dim=1).view(-1, self.ngf, 4, 4)
        return self.up(h)


class WordAttention(nn.Module):
    """The reference's GlobalAttentionGeneral: each pixel attends over the report's words.

    Words are projected to the feature channels (conv1x1 = linear, no bias); weights are a softmax over the
    real words of the report (padding gets exactly zero); the context is the weighted sum of projected words.
    """

    def __init__(self, channels: int, word_dim: int):
        super().__init__()
        self.project = nn.Linear(word_dim, channels, bias=False)

    def forward(self, h: torch.Tensor, words: torch.Tensor, mask: torch.Tensor):
        """h [B, C, H, W], words [B, L, Dw], mask [B, L] -> context [B, C, H, W], weights [B, H*W, L]."""
        b, c, height, width = h.shape
        keys = self.project(words.to(h.dtype))  # [B, L, C]
        query = h.flatten(2).transpose(1, 2)  # [B, HW, C]
        weights = masked_softmax(query @ keys.transpose(1, 2), mask[:, None, :], dim=-1)  # [B, HW, L]
        context = (weights.to(keys.dtype) @ keys).transpose(1, 2).reshape(b, c, height, width)
        return context, weights


class NextStage(nn.Module):
    """Attention, [h, context] -> R_NUM GLU residual blocks (2 gf) -> up-block -> gf at twice the size."""

    def __init__(self, gf_dim: int, word_dim: int, res_blocks: int):
        super().__init__()
        self.attention = WordAttention(gf_dim, word_dim)
        self.residual = nn.Sequential(*[GLUResBlock(2 * gf_dim) for _ in range(res_blocks)])
        self.up = UpBlock(2 * gf_dim, gf_dim)

    def forward(self, h, words, mask):
        context, weights = self.attention(h, words, mask)
        return self.up(self.residual(torch.cat([h, context], dim=1))), weights


class ImageHead(nn.Sequential):
    def __init__(self, gf_dim: int):
        super().__init__(conv3x3(gf_dim, 1), nn.Tanh())


class GeneratorOutput(NamedTuple):
    images: list[torch.Tensor]  # one [B, 1, s, s] per stage
    attention: list[torch.Tensor]  # one [B, s*s, L] per attention stage (at its input size)
    mu: torch.Tensor
    logvar: torch.Tensor


class AttnGenerator(nn.Module):
    """One view's G_NET: conditioning augmentation, the initial stage, attention stages, an image per stage."""

    def __init__(self, cfg: Config, text_dim: int, word_dim: int):
        super().__init__()
        self.ca = CondAugment(text_dim, cfg.condition_dim)
        self.init = InitStage(cfg.condition_dim + cfg.z_dim, cfg.gf_dim, cfg.stage_sizes[0])
        self.stages = nn.ModuleList(NextStage(cfg.gf_dim, word_dim, cfg.res_blocks) for _ in cfg.stage_sizes[1:])
        self.heads = nn.ModuleList(ImageHead(cfg.gf_dim) for _ in cfg.stage_sizes)

    def forward(self, report, words, mask, z, eps) -> GeneratorOutput:
        c, mu, logvar = self.ca(report, eps)
        h = self.init(torch.cat([c, z], dim=1))
        images, attention = [self.heads[0](h)], []
        for stage, head in zip(self.stages, self.heads[1:]):
            h, weights = stage(h, words, mask)
            images.append(head(h))
            attention.append(weights)
        return GeneratorOutput(images, attention, mu, logvar)


class Generators(nn.Module):
    """Both views' generators; ``noise`` [B, z + 2c] is z (shared by the views) then each view's CA epsilon."""

    def __init__(self, cfg: Config, text_dim: int, word_dim: int):
        super().__init__()
        self.z_dim, self.condition_dim = cfg.z_dim, cfg.condition_dim
        self.frontal = AttnGenerator(cfg, text_dim, word_dim)
        self.lateral = AttnGenerator(cfg, text_dim, word_dim)

    def forward(self, report, words, mask, noise):
        z, eps_f, eps_l = noise.split([self.z_dim, self.condition_dim, self.condition_dim], dim=1)
        f = self.frontal(report, words, mask, z, eps_f)
        lat = self.lateral(report, words, mask, z, eps_l)
        return f.images, lat.images, torch.stack([f.mu, lat.mu], 1), torch.stack([f.logvar, lat.logvar], 1)


class Networks(nn.Module):
    """What lives across the run and is checkpointed: the text encoder, the generators, their moving average."""

    def __init__(self, cfg: Config, vocab_size: int):
        super().__init__()
        self.encoder = get_text_encoder(cfg.encoder, cfg.text, vocab_size)
        self.generators = Generators(cfg, cfg.text.out_dim, self.encoder.word_dim)
        weights_init(self.generators)
        self.ema = copy.deepcopy(self.generators).requires_grad_(False) if cfg.ema_decay > 0 else None

    @property
    def sampler(self) -> Generators:
        """The generators that ``generate`` uses: the moving average when there is one (as the reference)."""
        return self.ema if self.ema is not None else self.generators

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        if self.ema is None:
            return
        torch._foreach_lerp_(list(self.ema.parameters()), list(self.generators.parameters()), 1 - decay)
        for ema_buffer, buffer in zip(self.ema.buffers(), self.generators.buffers()):
            ema_buffer.copy_(buffer)  # BN statistics: the live ones (the reference averages parameters only)


# Discriminators.
def block3x3(cin: int, cout: int, norm: str | None = "batch") -> list[nn.Module]:
    return [conv3x3(cin, cout)] + ([discriminator_norm(norm, cout)] if norm else []) + [nn.LeakyReLU(0.2)]


class Discriminator(nn.Module):
    """D_NET64 / 128 / 256: image -> 8 df x 4 x 4, an unconditional logit and (optionally) a conditional one."""

    def __init__(self, size: int, df_dim: int, text_dim: int, condition: bool, norm: str = "batch"):
        super().__init__()
        layers, c = down_block(1, df_dim, norm=None), df_dim
        for _ in range(int(math.log2(size // 4)) - 1):
            layers += down_block(c, 2 * c, norm)
            c *= 2
        while c != 8 * df_dim:  # 3x3 blocks back to 8 df (128 px: 16 -> 8; 256 px: 32 -> 16 -> 8)
            nxt = c // 2 if c > 8 * df_dim else 2 * c
            layers += block3x3(c, nxt, norm)
            c = nxt
        self.trunk = nn.Sequential(*layers)
        self.uncond = nn.Conv2d(c, 1, 4, stride=4)
        # An instance norm after the tiled report would subtract it away (XRayGAN's critic bug): none there.
        joint = block3x3(c + text_dim, c, "batch" if norm == "batch" else None)
        self.cond = nn.Sequential(*joint, nn.Conv2d(c, 1, 4, stride=4)) if condition else None

    def cond_logits(self, features: torch.Tensor, report: torch.Tensor) -> torch.Tensor:
        tiled = report[:, :, None, None].expand(-1, -1, *features.shape[-2:]).to(features.dtype)
        return self.cond(torch.cat([features, tiled], dim=1)).flatten().float()

    def forward(self, parts: list[torch.Tensor], report: torch.Tensor, wrong: bool) -> dict:
        """Each part (real, fake, ...) through the trunk on its own (its own BN batch, as the reference).

        Returns {"uncond": [logits [B] per part], "cond": [...] (empty without condition), "wrong": the
        conditional logits of part 0's first B-1 images with the next case's report, or None}.
        """
        out = {"uncond": [], "cond": [], "wrong": None}
        for i, x in enumerate(parts):
            features = self.trunk(x)
            out["uncond"].append(self.uncond(features).flatten().float())
            if self.cond is not None:
                out["cond"].append(self.cond_logits(features, report))
                if wrong and i == 0:
                    out["wrong"] = self.cond_logits(features[:-1], report[1:])
        return out


class Discriminators(nn.Module):
    """One discriminator per stage and view, in ``order``; one forward for all (so DDP sees one call)."""

    def __init__(self, cfg: Config, text_dim: int):
        super().__init__()
        d = [(s, cfg.df_dim, text_dim, cfg.d_condition, cfg.d_norm) for s in cfg.stage_sizes]
        self.frontal = nn.ModuleList(Discriminator(*args) for args in d)
        self.lateral = nn.ModuleList(Discriminator(*args) for args in d)
        self.order = [(view, k) for view in VIEWS for k in range(len(cfg.stage_sizes))]

    def forward(self, parts: list[list[torch.Tensor]], report: torch.Tensor, wrong: bool = False) -> list[dict]:
        return [getattr(self, view)[k](p, report, wrong) for (view, k), p in zip(self.order, parts)]


def bce(logits: torch.Tensor, target: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    targets = torch.full_like(logits, target)
    if weight is None:
        return F.binary_cross_entropy_with_logits(logits, targets)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (loss * weight).sum() / weight.sum().clamp(min=1)


def discriminator_bce(out: dict, wrong_weight: torch.Tensor) -> torch.Tensor:
    """The reference's D loss for one discriminator from its outputs on [real, fake]."""
    real_u, fake_u = bce(out["uncond"][0], 1.0), bce(out["uncond"][1], 0.0)
    if not out["cond"]:
        return real_u + fake_u
    real_c, fake_c = bce(out["cond"][0], 1.0), bce(out["cond"][1], 0.0)
    wrong_c = bce(out["wrong"], 0.0, wrong_weight)
    return (real_u + real_c) / 2 + (fake_u + fake_c + wrong_c) / 3


def critic_score(out: dict, part: int) -> torch.Tensor:
    """WGAN score of one part: the unconditional logit (+ the conditional one when there is one)."""
    score = out["uncond"][part]
    return score + out["cond"][part] if out["cond"] else score
