"""XRayGAN: report -> hierarchical attentional encoder -> multi-scale conditional GAN -> frontal + lateral.

Paper: Yang, Gireesh, Xing, Xie, "XRayGAN: Consistency-preserving Generation of X-ray Images from Radiology
Reports" (arXiv 2006.10552), section 2. Reference code: UCSD-AI4H/XRayGAN @ 8dc983f (``models/Decoder.py``
baseDecoderv3 / PDecoderv3 / MultiscaleDecoder, ``models/Discriminator.py`` PDiscriminator,
``trainer_xraygan.py``). Shapes and parameter counts match the reference at the paper setting
(G0 7,856,657; each G_k 1,803,590; critics 1,624,769 / 3,984,065 / 6,343,361 / 8,702,657 before the joint
conditioning layer below adds 326,144 to each).

Departures from the official code, each deliberate (and listed in docs/reproduction.md):
- The critics are conditional for real. The paper (section 2.2) feeds the report embedding to each
  discriminator beside the image features; the official code tiles the projected report vector over the 4x4
  map and then instance-normalises it, which makes the condition exactly zero, and a single linear head
  over [features, report] would leave it additive (score f(x) + g(c): g cancels between real and fake, which
  share c). Here the projection goes through a LeakyReLU before tiling (no normalisation of the constant
  map), then a joint conv1x1 + LeakyReLU over [features, report] precedes the conv4x4 head, as in Reed et
  al.'s matching-aware discriminator: the score has an image x report interaction
  (tests/test_conditioning.py). This adds (C + 128) x C + C parameters per critic (C = 512 at the paper
  setting: 326,144 net).
- One combined generator step per iteration (adversarial + 100 x L2 for both views + w x view consistency).
  The official three sequential steps reuse graphs across in-place updates, which current PyTorch refuses.
- The view-consistency term is -log P(same patient) from a frozen VCN, weight ``vc_weight``: 1 as the paper
  says (the official configs use 0.1). The VCN is trained on the train split only (the official one saw
  every report, test included), at each stage's resolution, then frozen and saved with its sha256.
- The critic step sees detached fakes and a detached report vector; the text encoder learns from the
  generator loss only. Real targets of lower stages are antialiased resizes (the official code: nearest).
- Warm-up (stage 0 only, ``warmup_epochs``): pure L2 on both views in one step (the official: two steps).
- Generator init (``g_init = "he"``): He et al.'s for LeakyReLU on every conv and linear of both views'
  cascades, each residual branch starting at zero (``layers.he_init``, as GAN-INT-CLS here). The official
  PyTorch default init leaves this norm-free cascade's output nearly constant whatever the report, so the L2
  warm-up cannot tell reports apart: at the tiny setting the report vector varied by 0.006 across reports after
  the warm-up and the main job's samples by 1.0 (frontal) and 0.16 (lateral) grey levels across 64 test
  cases (real images: 25 and 21): one image for every report. At init the He cascade's output varies
  across inputs 200x more (std 0.03 against 0.00016); after a shortened tiny run (128 train cases) the
  samples vary by 1.9 / 1.6 grey levels, the lateral no longer flat. ``g_init = "default"`` restores it.
- The learning rate falls by ``lr_decay`` (0.2, the paper's) at 50 % and 75 % of each stage's GAN epochs
  (``lr_schedule = "scaled"``; at 90 epochs: 45, 68, near the official 45 / 70). The paper's "x 0.2 every 20
  epochs" over the official 90 / 90 / 120 / 120 epochs left about half of each stage below 2 % of its base
  rate (stage 3 ending at 3e-8); it is ``lr_schedule = "every"``, one ``--set`` away.
Beyond the paper's Table 2 (variants, config values): ``protocol`` is Table 1a's XRayGAN, the paper's objective
without xbench's matching-aware term and with the warm-up epochs run as stage-0 GAN epochs (``warmup = "gan"``),
the terms of the baselines' stand-ins; ``projection`` swaps in a projection critic (Miyato and Koyama 2018,
``critic = "projection"``). Every run records ``critic_report_auroc`` (``methods.training``): whether the
trained critic reads the report at all (docs/reproduction.md rows 27-28).
Ablations are config values: ``vc_weight = 0`` (w/o VCN), ``schedule = "one_shot"`` (w/o MSCGAN: the same
generator, so the same depth and parameter count, trained at the final size only, without the progressive
curriculum), ``encoder = "flat"`` (w/o HAE). w/o MSCGAN trains as many epochs as the full model (20 warm-up
+ 420 GAN epochs at 256 px at the paper setting, so the same pairs seen; more compute per pair), so the
ablation measures the curriculum, not a budget cut; ``one_shot_epochs = "last"`` is the other reading
(20 + 120 epochs, the last stage's).
"""

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.distributed import barrier, world, wrap_ddp
from benchmark.core.errors import XbenchError
from benchmark.core.resize import resident_images
from benchmark.core.seeds import derive_seed, seed_everything
from benchmark.core.validation import check_ranges
from benchmark.data.images import to_unit_range
from benchmark.data.text import Tokens, Vocab
from methods.base import MethodConfig, PairedData, TextEncoder, TokenBatch, Views, count_parameters
from methods.layers import BaseGenerator, InstanceNorm, ResBlock, he_init, interpolates, wgan_gp_loss
from methods.text_encoders import get_text_encoder
from methods.training import (
    JsonlLog,
    Phase,
    StagedMethod,
    StageState,
    autocast,
    compile_in_place,
    generate_in_batches,
)
from methods.vcn import VCN, VCNConfig, consistency_loss, evaluate_vcn, load_vcn, save_vcn, train_vcn

VARIANTS = {  # the paper's Table 2, as config deviations
    "full": {},
    "no_vcn": {"vc_weight": 0.0},
    "no_mscgan": {"schedule": "one_shot"},
    "no_hae": {"encoder": "flat"},
    # beyond the paper: a projection critic (Miyato and Koyama 2018), the field's standard for a critic that uses
    # its condition, beside the paper's; does a critic that reads the report change anything?
    "projection": {"critic": "projection"},
    # Table 1a's XRayGAN: the paper's objective (section 2.4: WGAN-GP + L2 + VC; no matching-aware term, no
    # warm-up, which only the official code has), the terms the baselines' xraygan_protocol stand-ins train with;
    # the warm-up epochs become stage-0 GAN epochs, so the budget is the full model's
    "protocol": {"mismatch_weight": 0.0, "warmup": "gan"},
}


@dataclasses.dataclass(frozen=True)
class Config(MethodConfig):
    # Text.
    encoder: str = "hae"  # "hae" | "flat" (w/o HAE)
    text: TextEncoder.Config = TextEncoder.Config()
    # Generators.
    stage_sizes: tuple[int, ...] = (32, 64, 128, 256)  # px; each stage doubles
    schedule: str = "progressive"  # "progressive" | "one_shot" (w/o MSCGAN)
    one_shot_epochs: str = "total"  # w/o MSCGAN trains "total" = sum(epochs) GAN epochs (the full model's
    #                                 budget in pairs seen) | "last" = epochs[-1] (the last stage's only)
    blend: float = 0.5  # alpha of the paper's eq. (1)
    prog_channels: int = 128  # progressive generator width (official nf)
    prog_blocks: int = 4  # residual blocks per progressive stage
    prog_text: int = 64  # report projection tiled into each stage
    g_init: str = "he"  # "he" (variance-preserving, residual branches start at zero) | "default" (PyTorch's)
    # Critics.
    critic: str = "paper"  # "paper": report beside the image features, a joint conv1x1 (see Critic) |
    #                        "projection": psi(phi(x)) + <embed(c), phi(x)> (Miyato and Koyama 2018)
    critic_channels: int = 64
    critic_max_channels: int = 512
    critic_text: int = 128
    # Optimisation (the paper; batch 48 at stage 1 is the official config, the paper's text says 56).
    batch_sizes: tuple[int, ...] = (96, 48, 24, 12)
    lrs: tuple[float, ...] = (3e-4, 3e-4, 2e-4, 1e-4)
    lr_schedule: str = "scaled"  # "scaled": x lr_decay at lr_milestones (fractions of a stage's GAN epochs) |
    #                              "every": x lr_decay every lr_decay_every epochs (the paper's text)
    lr_decay: float = 0.2
    lr_milestones: tuple[float, ...] = (0.5, 0.75)  # "scaled": 90 epochs -> 45, 67 (official: 45, 70)
    lr_decay_every: int = 20  # epochs ("every" only)
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: tuple[int, ...] = (90, 90, 120, 120)  # GAN epochs per stage (official)
    warmup_epochs: int = 20  # stage 0 L2-only epochs (official)
    warmup: str = "l2"  # "l2": the warm-up epochs train on L2 alone | "gan": they are stage-0 GAN epochs instead
    # Loss weights.
    adv_weight: float = 1.0
    l2_weight: float = 100.0
    gp_weight: float = 10.0
    mismatch_weight: float = 0.5  # share of the critic's fake term given to real images with another case's
    #                               report (0: the paper's WGAN-GP, under which the critic ignores the report)
    vc_weight: float = 1.0  # the paper: 1; the official configs: 0.1
    vcn: VCNConfig = VCNConfig()
    # Speed (checkpoints, logging and bf16: MethodConfig).
    channels_last: bool = True  # critics, VCN and images; the generators too unless compiled (see __init__)
    compile: bool = False  # torch.compile the generators (the critics need double backward, which it lacks)

    def __post_init__(self):
        check_ranges(self)
        n = len(self.stage_sizes)
        for name in ("batch_sizes", "lrs", "epochs"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"xraygan: {name} needs one value per stage ({n}), got {getattr(self, name)}")
        if self.mismatch_weight > 1:
            raise ValueError(f"xraygan: mismatch_weight must be in [0, 1], got {self.mismatch_weight}")
        if any(b != 2 * a for a, b in zip(self.stage_sizes, self.stage_sizes[1:])):
            raise ValueError(f"xraygan: each stage must double the size, got {self.stage_sizes}")
        if self.g_init not in ("he", "default"):
            raise ValueError(f"xraygan: g_init must be 'he' or 'default', not {self.g_init!r}")
        if self.lr_schedule not in ("scaled", "every"):
            raise ValueError(f"xraygan: lr_schedule must be 'scaled' or 'every', not {self.lr_schedule!r}")
        if not all(0 < m < 1 for m in self.lr_milestones):
            raise ValueError(f"xraygan: lr_milestones must be fractions in (0, 1), not {self.lr_milestones}")
        if self.one_shot_epochs not in ("total", "last"):
            raise ValueError(f"xraygan: one_shot_epochs must be 'total' or 'last', not {self.one_shot_epochs!r}")
        if self.warmup not in ("l2", "gan"):
            raise ValueError(f"xraygan: warmup must be 'l2' or 'gan', not {self.warmup!r}")
        if self.critic not in ("paper", "projection"):
            raise ValueError(f"xraygan: critic must be 'paper' or 'projection', not {self.critic!r}")
        if self.schedule not in ("progressive", "one_shot"):
            raise ValueError(f"xraygan: schedule must be 'progressive' or 'one_shot', not {self.schedule!r}")


# Generators.
class ProgressiveGenerator(nn.Module):
    """G^(n): x(n) = a * G(x(n-1), c) + (1 - a) * U(x(n-1)), the paper's eq. (1)."""

    def __init__(self, text_dim: int, channels: int, blocks: int, text_proj: int, blend: float):
        super().__init__()
        self.blend = blend
        self.text = nn.Sequential(nn.Linear(text_dim, text_proj), nn.LeakyReLU(0.2))
        self.image = nn.Sequential(nn.Conv2d(1, channels - text_proj, 3, padding=1), nn.LeakyReLU(0.2))
        self.trunk = nn.Sequential(*[ResBlock(channels, nn.PReLU()) for _ in range(blocks)])  # one slope each
        self.up = nn.Sequential(nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2), nn.PReLU())
        self.head = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Tanh())

    def forward(self, prev: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h, w = prev.shape[-2:]
        text = self.text(c)[:, :, None, None].expand(-1, -1, h, w)
        x0 = torch.cat([self.image(prev), text], dim=1)
        residual = self.head(self.up(x0 + self.trunk(x0)))  # long skip, then x2
        upsampled = F.interpolate(prev, scale_factor=2, mode="bilinear")
        return self.blend * residual + (1 - self.blend) * upsampled


class MultiScaleGenerator(nn.Module):
    """One view's cascade: G^(1) at the first size, then a progressive stage per doubling."""

    def __init__(self, cfg: Config):
        super().__init__()
        d = cfg.text.out_dim
        self.base = BaseGenerator(d, cfg.stage_sizes[0])
        self.stages = nn.ModuleList(
            ProgressiveGenerator(d, cfg.prog_channels, cfg.prog_blocks, cfg.prog_text, cfg.blend)
            for _ in cfg.stage_sizes[1:]
        )

    def forward(self, c: torch.Tensor, stage: int) -> torch.Tensor:
        x = self.base(c)
        for g in self.stages[:stage]:  # earlier stages are not detached: gradients reach all of them
            x = g(x, c)
        return x


class Generators(nn.Module):
    """Everything the generator optimiser trains: the text encoder and both views' cascades."""

    def __init__(self, cfg: Config, vocab_size: int):
        super().__init__()
        self.encoder = get_text_encoder(cfg.encoder, cfg.text, vocab_size)
        self.frontal = MultiScaleGenerator(cfg)
        self.lateral = MultiScaleGenerator(cfg)
        if cfg.g_init == "he":  # see the module docstring: the default init makes the output report-blind
            he_init(self.frontal)
            he_init(self.lateral)

    def forward(self, findings, impression, flat, stage: int):
        c = self.encoder(TokenBatch(findings, impression, flat)).report
        return self.frontal(c, stage), self.lateral(c, stage), c


# Critics.
class Critic(nn.Module):
    """A WGAN critic at one stage: image -> 4x4x512 features, report projection tiled beside, a joint conv1x1 +
    LeakyReLU over both, conv4x4 -> 3x3 scores averaged.

    The joint layer is what makes it conditional: with one linear head over [features, text] the score is
    f(x) + g(c), g(c) cancels between real and fake (they share c), and the critic never judges whether an
    image fits its report. Every output unit sees the whole image (receptive field >= the input): a small
    grid, not a local PatchGAN.
    """

    def __init__(self, size: int, text_dim: int, cfg: Config):
        super().__init__()
        self.image, c = critic_trunk(size, cfg)
        self.text = nn.Sequential(nn.Linear(text_dim, cfg.critic_text), nn.LeakyReLU(0.2))  # no norm: see top
        self.joint = nn.Sequential(nn.Conv2d(c + cfg.critic_text, c, 1), nn.LeakyReLU(0.2))  # no norm either
        self.head = nn.Conv2d(c, 1, 4, padding=1)

    def forward(self, image: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        features = self.image(image)  # [B, C, 4, 4]
        text = self.text(c)[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        return self.head(self.joint(torch.cat([features, text], dim=1))).mean(dim=(1, 2, 3))  # [B]


def critic_trunk(size: int, cfg: Config) -> tuple[nn.Sequential, int]:
    """image [B, 1, size, size] -> features [B, C, 4, 4] (the reference's PDiscriminator trunk), and C."""
    c = cfg.critic_channels
    layers = [nn.Conv2d(1, c, 3, padding=1, bias=False), nn.LeakyReLU(0.2)]
    for _ in range(int(math.log2(size // 4))):
        nxt = min(2 * c, cfg.critic_max_channels)
        layers += [nn.Conv2d(c, nxt, 3, stride=2, padding=1, bias=False), InstanceNorm(), nn.LeakyReLU(0.2)]
        c = nxt
    return nn.Sequential(*layers), c


class ProjectionCritic(nn.Module):
    """A projection critic (Miyato and Koyama, "cGANs with Projection Discriminator", 2018): the same trunk,
    phi(x) its features averaged over the 4x4 map, score = psi(phi(x)) + <embed(c), phi(x)>. The report enters
    as an inner product with the image features, so the score's report-dependent part is an image x report
    interaction by construction (it cannot cancel between real and fake as an additive g(c) does)."""

    def __init__(self, size: int, text_dim: int, cfg: Config):
        super().__init__()
        self.image, c = critic_trunk(size, cfg)
        self.psi = nn.Linear(c, 1)
        self.embed = nn.Linear(text_dim, c, bias=False)

    def forward(self, image: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        phi = self.image(image).mean(dim=(2, 3))  # [B, C]
        return self.psi(phi)[:, 0] + (self.embed(c) * phi).sum(dim=1)  # [B]


CRITICS = {"paper": Critic, "projection": ProjectionCritic}


class Critics(nn.Module):
    """The frontal and the lateral critic of one stage (fresh at every stage, as the reference). Each
    (frontal, lateral, report) group is its own pass, all in one call (so DDP sees one forward)."""

    def __init__(self, size: int, text_dim: int, cfg: Config):
        super().__init__()
        self.frontal = CRITICS[cfg.critic](size, text_dim, cfg)
        self.lateral = CRITICS[cfg.critic](size, text_dim, cfg)

    def forward(self, groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> list[tuple]:
        return [(self.frontal(f, c), self.lateral(l, c)) for f, l, c in groups]


def critic_loss(
    critics: nn.Module,
    real: tuple,
    fake: tuple,
    c: torch.Tensor,
    gp_weight: float,
    mismatched: tuple[torch.Tensor, torch.Tensor] | None = None,
    mismatch_weight: float = 0.0,
) -> torch.Tensor:
    """WGAN-GP for both views, with real images under other cases' reports as a second kind of fake.

    Real and fake share their report, so a conditional critic trained on them alone has no reason to check
    the report: an image that looks real scores high whatever it is paired with (measured: paired AUROC 0.50,
    own report vs another's). ``mismatched`` = (other cases' reports [B, D], mask [B] of the samples whose
    other report differs from their own); the fake expectation becomes (1 - w) E[D(G(c), c)] + w E[D(x, c')],
    Reed et al.'s matching-aware discriminator in WGAN form. Everything goes through each critic as one batch
    (instance norm keeps the samples apart); the interpolates (real vs fake only) get their own pass, so the
    penalty's double backward covers them only.
    """
    interp = interpolates(real, fake)
    n = len(c)
    images = [torch.cat([r, f.detach()]) for r, f in zip(real, fake)]
    reports = [c, c]
    wrong = 0
    if mismatched is not None and mismatch_weight > 0 and bool(mismatched[1].any()):
        other, keep = mismatched
        images = [torch.cat([batch, r[keep]]) for batch, r in zip(images, real)]
        reports.append(other[keep])
        wrong = int(keep.sum())
    scores, interp_scores = critics([(*images, torch.cat(reports)), (*interp, c)])
    total = 0
    for s, s_interp, i in zip(scores, interp_scores, interp):
        s = s.float()
        if wrong:  # shift the fake term by w (E[D(x, c')] - E[D(G(c), c)]): then the same WGAN-GP loss
            shift = mismatch_weight * (s[2 * n :].mean() - s[n : 2 * n].mean())
            s = s[: 2 * n]
        else:
            shift = 0
        total = total + wgan_gp_loss(torch.cat([s, s_interp]), i, gp_weight) + shift
    return total


def mismatched_reports(c: torch.Tensor, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's neighbour's report (the batch is a random draw) and a mask of the samples whose
    neighbour's report differs from their own in tokens (identical reports, common for normal cases, are no
    mismatch)."""
    other = c.roll(1, dims=0)
    return other, (flat != flat.roll(1, dims=0)).any(dim=1)


def lr_factor(cfg: Config, phase: Phase, epoch: int) -> float:
    """The learning rate of ``epoch`` of ``phase`` as a fraction of its stage's base rate (warm-up: 1).

    "scaled" (the default) decays at fixed fractions of each stage's GAN epochs, so every stage ends at
    lr_decay^2 = 4 % of its base whatever its length. "every" is the paper's text (x 0.2 every 20 epochs)
    on the official 90 / 90 / 120 / 120 epochs: about half of each stage below 2 % of its base, stage 3
    ending at 3e-8 (docs/reproduction.md).
    """
    if phase.name != "gan":
        return 1.0
    if cfg.lr_schedule == "every":
        return cfg.lr_decay ** (epoch // cfg.lr_decay_every)
    return cfg.lr_decay ** sum(epoch >= math.ceil(m * phase.epochs) for m in cfg.lr_milestones)


# The method.
@dataclasses.dataclass
class XRayGANStage(StageState):
    """A stage's critics and optimisers, plus the frozen VCN it trains against and the train split on the device."""

    vcn: VCN | None
    tokens: TokenBatch
    real: torch.Tensor  # uint8 [N, 2, size, size]


class XRayGAN(StagedMethod):
    Config = Config
    variants = VARIANTS

    def __init__(self, cfg: Config, vocab: Vocab, *, image_size: int = 256, device=None, seed: int = 0):
        super().__init__(cfg, vocab, image_size=image_size, device=device, seed=seed)
        if cfg.stage_sizes[-1] != image_size:
            raise ValueError(f"xraygan: the last stage size {cfg.stage_sizes[-1]} must equal image_size {image_size}")
        seed_everything(derive_seed(seed, "init"))
        self.generators = Generators(cfg, len(vocab)).to(self.device)
        self._vcn: VCN | None = None  # the current stage's frozen VCN
        self._vcn_size = 0  # the px it was trained at
        if cfg.channels_last and not cfg.compile:
            self.generators.to(memory_format=torch.channels_last)
        if cfg.compile:  # recompiles per stage and batch shape. Left in NCHW: channels_last by hand crashed the
            # first compiled backward on an H200 (torch 2.11): assert_size_stride on the (512, 512, 3, 3) weight
            # gradient of the base generator's first convolution, which runs on a 1x1 map (compile_in_place).
            compile_in_place(self.generators)

    # Training.
    @property
    def networks(self) -> nn.Module:
        return self.generators

    def fit(self, train: PairedData, val: PairedData | None, run_dir: Path, *, resume: bool = False) -> None:
        super().fit(train, val, run_dir, resume=resume)  # self.val: held-out pairs that gate each stage's VCN
        self.generators.requires_grad_(True)

    def phases(self) -> list[Phase]:
        cfg = self.cfg
        last = len(cfg.stage_sizes) - 1
        stages = range(last + 1) if cfg.schedule == "progressive" else [last]
        extra = cfg.warmup_epochs if cfg.warmup == "gan" else 0  # warm-up epochs spent as stage-0 GAN epochs
        warmup = [Phase(stages[0], "warmup", cfg.warmup_epochs - extra, cfg.batch_sizes[stages[0]])]
        if cfg.schedule == "one_shot" and cfg.one_shot_epochs == "total":  # the full model's budget, in one go
            return warmup + [Phase(last, "gan", sum(cfg.epochs) + extra, cfg.batch_sizes[last])]
        return warmup + [
            Phase(k, "gan", cfg.epochs[k] + (extra if k == stages[0] else 0), cfg.batch_sizes[k]) for k in stages
        ]

    def budget(self, n_train: int) -> dict:
        """The generator's budget (``StagedMethod.budget``) plus the frozen VCN's pretraining: ``vcn.epochs`` over
        the train split at each GAN stage's size (none with ``vc_weight = 0``)."""
        budget = super().budget(n_train)
        stages = {p.stage for p in self.phases() if p.name == "gan"}
        if self.cfg.vc_weight > 0:
            epochs = self.cfg.vcn.epochs * len(stages)
            budget["pretraining"] = {"vcn": {"pairs_seen": epochs * n_train, "epochs": epochs}}
        return budget

    def begin_stage(self, stage: int, train: PairedData, run_dir: Path) -> "XRayGANStage":
        cfg, device = self.cfg, self.device
        size = cfg.stage_sizes[stage]
        for view in (self.generators.frontal, self.generators.lateral):
            for k, later in enumerate(view.stages, start=1):
                later.requires_grad_(k <= stage)  # unused stages stay out of DDP's gradient reduction
        generators = wrap_ddp(self.generators, device)
        tokens = TokenBatch.of(train.tokens, device)
        real = resident_images(train.pixels, size, device)
        if cfg.vc_weight > 0:
            self._vcn = self._stage_vcn(stage, real, run_dir, init=self._vcn)
            self._vcn_size = size
            if cfg.channels_last:  # it scores the generators' channels_last images in every step
                self._vcn.to(memory_format=torch.channels_last)
        with torch.random.fork_rng(devices=[]):  # the same critics whether the run was resumed or not
            torch.manual_seed(derive_seed(self.seed, "critics", stage))
            critics = Critics(size, cfg.text.out_dim, cfg).to(device)
        if cfg.channels_last:
            critics.to(memory_format=torch.channels_last)
        opt_g, opt_d = self._adam(self.generators, cfg.lrs[stage]), self._adam(critics, cfg.lrs[stage])
        return XRayGANStage(
            stage, generators, opt_g, self._vcn, tokens, real,
            discriminators=critics, discriminators_ddp=wrap_ddp(critics, device), opt_d=opt_d,
        )  # fmt: skip

    def set_epoch(self, state: "XRayGANStage", phase: Phase, epoch: int) -> None:
        state.set_lr(self.cfg.lrs[state.stage] * lr_factor(self.cfg, phase, epoch))

    def train_step(self, state: "XRayGANStage", phase: Phase, index: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, critics = self.cfg, state.discriminators
        batch = state.tokens[index]
        target = to_unit_range(state.real[index])  # [B, 2, H, W]
        if cfg.channels_last:
            target = target.contiguous(memory_format=torch.channels_last)
        real_f, real_l = target[:, :1], target[:, 1:]
        with autocast(self.device, cfg):
            fake_f, fake_l, c = state.generators(batch.findings, batch.impression, batch.flat, state.stage)
        losses = {}
        if phase.name == "gan":
            # Update the critics.
            with autocast(self.device, cfg):
                loss_d = critic_loss(
                    state.discriminators_ddp,
                    (real_f, real_l),
                    (fake_f.detach(), fake_l.detach()),
                    c.detach(),
                    cfg.gp_weight,
                    mismatched_reports(c.detach(), batch.flat),
                    cfg.mismatch_weight,
                )
            state.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            state.opt_d.step()
            losses["critic"] = loss_d.detach()
        # Update the generators (and the text encoder): one combined step.
        with autocast(self.device, cfg):
            l2 = F.mse_loss(fake_f.float(), real_f) + F.mse_loss(fake_l.float(), real_l)
            loss_g = cfg.l2_weight * l2
            if phase.name == "gan":
                critics.requires_grad_(False)  # the plain module: DDP must not see a frozen forward
                adv = -sum(s.float().mean() for s in critics([(fake_f, fake_l, c)])[0])
                critics.requires_grad_(True)
                loss_g = loss_g + cfg.adv_weight * adv
                losses["adv"] = adv.detach()
                if state.vcn is not None:
                    vc = consistency_loss(state.vcn, fake_f, fake_l)
                    loss_g = loss_g + cfg.vc_weight * vc
                    losses["vc"] = vc.detach()
        state.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        state.opt_g.step()
        losses["l2"] = l2.detach()
        losses["generator"] = loss_g.detach()
        return losses

    @torch.no_grad()
    def critic_report_scores(self, state: "XRayGANStage", pairs: PairedData) -> dict[str, tuple[torch.Tensor, ...]]:
        """The last stage's frontal and lateral critics on the real pairs, under each case's own report and under
        the next case's (the text encoder as trained)."""
        size = self.cfg.stage_sizes[state.stage]
        real = resident_images(pairs.pixels, size, self.device)
        tokens = TokenBatch.of(pairs.tokens, self.device)
        chunks = [torch.arange(i, min(i + 128, len(pairs)), device=self.device) for i in range(0, len(pairs), 128)]
        with autocast(self.device, self.cfg):
            c = torch.cat([self.generators.encoder(tokens[index]).report.float() for index in chunks])
            other = c.roll(1, dims=0)
            scores = {"frontal": ([], []), "lateral": ([], [])}
            for index in chunks:
                images = to_unit_range(real[index])
                own, wrong = state.discriminators([(images[:, :1], images[:, 1:], c[index]),
                                                   (images[:, :1], images[:, 1:], other[index])])  # fmt: skip
                for view, a, b in zip(("frontal", "lateral"), own, wrong):
                    scores[view][0].append(a.float())
                    scores[view][1].append(b.float())
        return {view: (torch.cat(a), torch.cat(b)) for view, (a, b) in scores.items()}

    @torch.no_grad()
    def self_consistency(self, frontal: np.ndarray, lateral: np.ndarray) -> np.ndarray | None:
        """The last stage's frozen VCN on generated pairs (None with vc_weight 0: no VCN was trained)."""
        if self._vcn is None:
            return None
        size = self._vcn_size
        out = []
        for start in range(0, len(frontal), 128):
            pair = np.stack([frontal[start : start + 128], lateral[start : start + 128]], axis=1)
            images = to_unit_range(resident_images(pair, size, self.device))
            out.append(self._vcn.p_same(images[:, 0:1], images[:, 1:2]).double().cpu())
        return torch.cat(out).numpy()

    def _stage_vcn(self, stage: int, real: torch.Tensor, run_dir: Path, init: VCN | None) -> VCN:
        """The frozen VCN of a stage: trained once on the train split at the stage size, saved with its sha256."""
        path = run_dir / "vcn" / f"stage{stage}_{real.shape[-1]}px.pt"
        log = JsonlLog(run_dir / "log.jsonl")
        barrier()  # every rank decides from the same files: train all (deterministically) or load all
        if path.is_file():
            return self._check_vcn(stage, load_vcn(path, device=self.device), log)
        vcn = train_vcn(
            real,
            real.shape[-1],
            self.cfg.vcn,
            seed=derive_seed(self.seed, "vcn", stage),
            device=self.device,
            init=init,
            precision=self.cfg,
            log=lambda epoch, loss, acc: log.write(
                stage=stage, phase="vcn", epoch=epoch, loss=round(loss, 6), accuracy=round(acc, 4)
            ),
        )
        if world().is_main:
            save_vcn(vcn, path)
        barrier()
        return self._check_vcn(stage, vcn, log)

    def _check_vcn(self, stage: int, vcn: VCN, log: JsonlLog) -> VCN:
        """The gate: the VCN's AUROC on held-out val pairs at the stage size, logged and kept in
        ``fit_summary``; below ``vcn.min_auroc`` the run stops (a VCN at chance makes the VC term noise)."""
        val = self.val
        if val is None:  # nothing held out (unit tests fitting on a bare train split): no gate
            return vcn
        size = self.cfg.stage_sizes[stage]
        result = evaluate_vcn(vcn, val.pixels, size, seed=derive_seed(self.seed, "vcn-val", stage))
        self.fit_summary.setdefault("vcn_val", {})[f"stage{stage}_{size}px"] = result
        log.write(stage=stage, phase="vcn_val", **{k: round(v, 6) for k, v in result.items()})
        if result["auroc"] < self.cfg.vcn.min_auroc:
            raise XbenchError(
                f"xraygan stage {stage} ({size} px): the VCN separates held-out val pairs with AUROC "
                f"{result['auroc']:.3f} < model.vcn.min_auroc {self.cfg.vcn.min_auroc}; train it longer "
                "(model.vcn.epochs) or lower the threshold (--set model.vcn.min_auroc=0)"
            )
        return vcn

    def _adam(self, module: nn.Module, lr: float) -> torch.optim.Adam:
        fused = self.device.type == "cuda"
        return torch.optim.Adam(module.parameters(), lr=lr, betas=self.cfg.betas, fused=fused)

    # Sampling.
    def generate(self, tokens: Tokens, seeds: Sequence[int], batch_size: int = 64) -> Views:
        """Deterministic: XRayGAN has no noise input, so ``seeds`` does not change the images."""
        stage = len(self.cfg.stage_sizes) - 1

        def views_of(batch, _seeds):
            f, l, _ = self.generators(batch.findings, batch.impression, batch.flat, stage)
            return f, l

        return generate_in_batches(self, tokens, seeds, batch_size, views_of)

    @classmethod
    def warmup(cls, cfg: Config) -> int:
        return 0 if cfg.warmup == "gan" else cfg.warmup_epochs

    @classmethod
    def conditional_critics(cls, cfg: Config, image_size: int) -> dict[str, tuple]:
        d = cfg.text.out_dim
        return {f"critic {s}px": (CRITICS[cfg.critic](s, d, cfg).eval(), s, d) for s in cfg.stage_sizes}

    # Checkpoints: Method.state_dict / load_state_dict save and load ``self.generators``.
    def parameter_counts(self) -> dict[str, int]:
        g = self.generators
        counts = {"text encoder": count_parameters(g.encoder), "G_f base (32px)": count_parameters(g.frontal.base)}
        for k, stage in enumerate(g.frontal.stages, start=1):
            counts[f"G_f stage {k} ({self.cfg.stage_sizes[k]}px)"] = count_parameters(stage)
        counts["G_l (same as G_f)"] = count_parameters(g.lateral)
        for k, size in enumerate(self.cfg.stage_sizes):
            counts[f"critic stage {k} ({size}px), per view"] = count_parameters(
                CRITICS[self.cfg.critic](size, self.cfg.text.out_dim, self.cfg)
            )
        return counts
