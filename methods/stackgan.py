"""StackGAN: report -> HAE report vector -> conditioning augmentation -> Stage-I sketch at low resolution ->
Stage-II refinement to the final size, for the frontal and the lateral view.

Paper: Zhang, Xu, Li, Zhang, Wang, Huang, Metaxas, "StackGAN: Text to Photo-realistic Image Synthesis with
Stacked Generative Adversarial Networks" (ICCV 2017). Reference code: hanzhanggit/StackGAN-Pytorch (v1, MIT)
``code/model.py`` (CA_NET, STAGE1_G/D, STAGE2_G/D), ``code/miscc/utils.py`` (losses), ``code/trainer.py``.
A Table 1 baseline of Yang et al., XRayGAN (arXiv 2006.10552), where every method's text encoder is the
hierarchical attentional encoder (``hae``). Written from the paper and a reading of the reference code; no code
copied.

Faithful parts (the defaults, v1 at the paper's settings):
- Conditioning augmentation: Linear(text -> 2 x 128) -> mu, log sigma^2; c = mu + sigma * eps;
  KL(N(mu, sigma^2) || N(0, I)) averaged over elements, weight 2 in the generator loss. Each stage has its own.
- Stage-I G: [c 128, z 100] -> Linear -> 8 gf x 4 x 4 (gf 128: 1024) + BN + ReLU -> up-blocks (nearest x2,
  conv3x3, BN, ReLU) halving the channels to the Stage-I size (4 blocks to 64 px) -> conv3x3 + tanh.
- Stage-II G: the frozen Stage-I image -> conv3x3 + ReLU, 2 x (conv4x4 s2, BN, ReLU) -> 4 gf x 16 x 16 (gf 128),
  c tiled beside -> conv3x3 + BN + ReLU -> 4 residual blocks -> up-blocks to the final size (4 to 256 px) ->
  conv3x3 + tanh.
- D (each stage, each view): conv4x4 s2 + LeakyReLU, then conv4x4 s2 + BN + LeakyReLU doubling the channels
  down to 4 x 4 (Stage-II at 256 px: to 32 ndf), conv3x3 blocks back to 8 ndf; the conditional logit from mu
  tiled beside (conv3x3 + BN + LeakyReLU, conv4x4 s4); Stage-II also an unconditional logit (conv4x4 s4).
- Losses (BCE): D = mean(real terms) + mean(fake, mismatch (+ unconditional fake) terms), i.e. Stage-I
  real + (fake + wrong) / 2 and Stage-II (real_c + real_u) / 2 + (fake_c + wrong_c + fake_u) / 3, where
  "wrong" is a real image with the previous case's mu; D sees mu detached; G = BCE(fake -> real) per head
  + 2 x KL. Init N(0, 0.02) (BN scales N(1, 0.02)).
- Order: Stage-I first; then Stage-II with Stage-I frozen. The paper: 600 + 600 epochs, batch 64, Adam 2e-4,
  betas (0.5, 0.999), lr halved every 100 epochs.

Departures, each deliberate:
- No ReLU after the CA's linear layer. v1 applies one to mu and log sigma^2 alike (a known quirk: sigma >= 1,
  mu >= 0, and a unit the KL term pushes below zero never comes back): measured at the tiny setting after six Stage-I
  epochs, 97% of the CA units were dead and mu was the same for every report (the text gone from c); without
  it, 53% and mu varies with the report. The paper's CA is a fully connected layer, as here.
- Text: the shared HAE report vector (512-d) replaces the 1024-d char-CNN-RNN embedding. As StackGAN's, it
  is pretrained and fixed (``text_embedding = "pretrained"``): trained once on the train split to match
  reports with their image pairs (``methods/embedding.py``, in the spirit of Reed's DS-SJE), then frozen for
  both stages. ``text_embedding = "trained_jointly"`` trains it with Stage-I instead (in the generator
  optimiser, from the generator loss) and freezes it with Stage-I during Stage-II, since Stage-I's input must
  not drift under its frozen weights.
- One channel; Stage-I at ``stage1_size`` and Stage-II to the run's image size (v1: 64 -> 256, also the default
  here); the up-block counts follow from the sizes.
- Two views: a Stage-I and a Stage-II generator (each with its CAs) and their discriminators per view; both
  views get the same report vector, the same z and the same CA noise eps per case (two samples of one case
  share their randomness). The two views' losses are summed; one Adam over a stage's generators, one over its Ds.
- The frozen Stage-I runs in eval mode during Stage-II (v1 leaves its batch norms in training mode, so their
  statistics keep moving under frozen weights): Stage-II refines exactly what ``generate`` feeds it.
- Mismatching pairs: v1 rolls the batch by one, so does this; pairs whose two reports are identical token for
  token (normal studies often are) are true matches and are left out of the mismatch term.
- BCE on logits instead of sigmoid + BCE (the same loss, stable). No image augmentation (v1: random crop and
  flip; xbench's image pipeline is shared by every method).

Variant ``xraygan_protocol`` (config values, ``VARIANTS``): the XRayGAN authors' StackGAN trained
WGAN-GP critics plus 100 x pixel L2 with no KL, no mismatching pairs and conditional logits only. Here:
``loss = "wgan_gp"`` (per head E[D(fake)] - E[D(real)], + 10 x gradient penalty), ``d_norm = "instance"``
(batch norm breaks the per-sample penalty; layers that see the tiled mu get no norm, since an instance norm
would cancel it), ``kl_weight = 0`` (the CA still samples: noise injection, as theirs), ``mismatch_pairs =
False``, ``stage2_uncond = False``, ``l2_weight = 100`` per stage and view, Adam betas (0.9, 0.999), and
``text_embedding = "trained_jointly"`` (the HAE from random weights, trained with Stage-I). The
networks and the sequential v1 order stay this file's (theirs was the v2 tree trained jointly, without z).
Their schedule (150 epochs, batch 24, lr 1e-4 x 0.2 at epochs 40 and 80) is ``XRAYGAN_SCHEDULE``, for a
paper-scale config: not in the variant, so the tiny setting plus a variant stays tiny.
"""

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.distributed import wrap_ddp
from benchmark.core.resize import resident_images
from benchmark.core.seeds import derive_seed, seed_everything
from benchmark.core.validation import check_ranges
from benchmark.data.images import to_unit_range
from benchmark.data.text import Tokens, Vocab
from methods.base import MethodConfig, PairedData, TextEncoder, TokenBatch, Views, count_parameters
from methods.embedding import EmbeddingConfig, FixedEmbedding, check_text_embedding
from methods.layers import (
    case_noise,
    check_discriminator_loss,
    dcgan_init,
    discriminator_norm,
    discriminator_term,
    gradient_penalty,
    interpolates,
    kl_divergence,
    mismatched,
)
from methods.text_encoders import get_text_encoder
from methods.training import PairedStage, Phase, StagedMethod, autocast, generate_in_batches

VARIANTS = {
    "faithful": {},
    "xraygan_protocol": {  # the XRayGAN authors' objective: no KL, no mismatching pairs
        "loss": "wgan_gp",
        "d_norm": "instance",
        "kl_weight": 0.0,
        "mismatch_pairs": False,
        "stage2_uncond": False,
        "l2_weight": 100.0,
        "betas": (0.9, 0.999),
        "text_embedding": "trained_jointly",
    },
}
# The authors' optimisation schedule (``trainer_stackgan.py``), per stage here, for paper-scale configs.
XRAYGAN_SCHEDULE = {
    "batch_sizes": (24, 24),
    "epochs": (150, 150),
    "lr": 1e-4,
    "lr_decay": 0.2,
    "lr_milestones": (40, 80),
}


@dataclasses.dataclass(frozen=True)
class Config(MethodConfig):
    # Text.
    encoder: str = "hae"
    text: TextEncoder.Config = TextEncoder.Config()
    # "pretrained": matched to the images on the train split, then frozen (StackGAN's fixed embedding; see
    # methods/embedding.py) | "trained_jointly": from random weights, with Stage-I
    text_embedding: str = "pretrained"
    embedding: EmbeddingConfig = EmbeddingConfig()
    # Generators.
    z_dim: int = 100
    c_dim: int = 128  # conditioning augmentation output (v1 CONDITION_DIM)
    gf: int = 128  # v1 GF_DIM: Stage-I starts at 8 gf channels, Stage-II works at 4 gf
    res_blocks: int = 4  # Stage-II residual blocks (v1 R_NUM)
    stage1_size: int = 64  # px; Stage-II refines to the run's image size
    # Discriminators.
    ndf: int = 64  # v1 DF_DIM
    d_norm: str = "batch"  # "batch" (v1) | "instance" (WGAN-GP critics)
    stage2_uncond: bool = True  # Stage-II D's unconditional logit (v1)
    # Objective.
    loss: str = "bce"  # "bce" (v1) | "wgan_gp" (the XRayGAN authors')
    kl_weight: float = 2.0  # v1 TRAIN.COEFF.KL; 0 = CA without its KL term
    mismatch_pairs: bool = True  # (real image, mismatching mu) as a D negative
    l2_weight: float = 0.0  # pixel MSE per view and stage (the XRayGAN authors: 100)
    gp_weight: float = 10.0  # WGAN-GP lambda (loss = "wgan_gp" only)
    # Optimisation (the paper: batch 64, 600 epochs per stage, Adam 2e-4 (0.5, 0.999), lr x 0.5 every 100).
    batch_sizes: tuple[int, int] = (64, 64)  # Stage-I, Stage-II
    epochs: tuple[int, int] = (600, 600)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_decay: float = 0.5
    lr_milestones: tuple[int, ...] = (100, 200, 300, 400, 500)  # epochs of a stage at which lr *= lr_decay
    # Speed (checkpoints, logging and bf16: MethodConfig).
    channels_last: bool = True

    def __post_init__(self):
        check_ranges(self)
        check_text_embedding("stackgan", self.text_embedding)
        check_discriminator_loss("stackgan", self.loss, self.d_norm)
        if len(self.batch_sizes) != 2 or len(self.epochs) != 2:
            raise ValueError(
                f"stackgan: batch_sizes and epochs need one value per stage (2): {self.batch_sizes}, {self.epochs}"
            )
        if self.stage1_size < 8 or self.stage1_size & (self.stage1_size - 1):
            raise ValueError(f"stackgan: stage1_size must be a power of two >= 8, not {self.stage1_size}")


# Generators.
class CondAugment(nn.Module):
    """The paper's CA: (mu, log sigma^2) = Linear(text) split in two; c = mu + sigma * eps (v1 adds a ReLU: see top)."""

    def __init__(self, text_dim: int, c_dim: int):
        super().__init__()
        self.fc = nn.Linear(text_dim, 2 * c_dim)

    def forward(self, text: torch.Tensor, eps: torch.Tensor):
        mu, logvar = self.fc(text).chunk(2, dim=1)
        return mu + (0.5 * logvar).exp() * eps, mu, logvar


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class ResidualBlock(nn.Module):
    """v1's: ReLU(x + BN(conv3x3(ReLU(BN(conv3x3(x))))))."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
        )  # fmt: skip

    def forward(self, x):
        return F.relu(x + self.body(x))


class StageOneGenerator(nn.Module):
    """[c, z] -> 8 gf x 4 x 4 -> up-blocks -> [B, 1, stage1_size, stage1_size]."""

    def __init__(self, cfg: Config):
        super().__init__()
        c = 8 * cfg.gf
        self.ca = CondAugment(cfg.text.out_dim, cfg.c_dim)
        self.fc = nn.Sequential(nn.Linear(cfg.c_dim + cfg.z_dim, c * 16, bias=False), nn.BatchNorm1d(c * 16), nn.ReLU())
        ups = []
        for _ in range(int(math.log2(cfg.stage1_size // 4))):
            ups.append(up_block(c, c // 2))
            c //= 2
        self.ups = nn.Sequential(*ups)
        self.head = nn.Sequential(nn.Conv2d(c, 1, 3, padding=1, bias=False), nn.Tanh())

    def forward(self, text: torch.Tensor, z: torch.Tensor, eps: torch.Tensor):
        c, mu, logvar = self.ca(text, eps)
        h = self.fc(torch.cat([c, z], dim=1)).view(len(z), -1, 4, 4)
        return self.head(self.ups(h)), mu, logvar


class StageTwoGenerator(nn.Module):
    """Stage-I image -> 4 gf x (s/4) x (s/4), c tiled beside -> residual blocks -> up-blocks -> [B, 1, size, size]."""

    def __init__(self, cfg: Config, size: int):
        super().__init__()
        g = cfg.gf
        self.ca = CondAugment(cfg.text.out_dim, cfg.c_dim)
        self.encode = nn.Sequential(
            nn.Conv2d(1, g, 3, padding=1, bias=False), nn.ReLU(),
            nn.Conv2d(g, 2 * g, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * g), nn.ReLU(),
            nn.Conv2d(2 * g, 4 * g, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * g), nn.ReLU(),
        )  # fmt: skip
        self.joint = nn.Sequential(
            nn.Conv2d(4 * g + cfg.c_dim, 4 * g, 3, padding=1, bias=False), nn.BatchNorm2d(4 * g), nn.ReLU()
        )
        self.residual = nn.Sequential(*[ResidualBlock(4 * g) for _ in range(cfg.res_blocks)])
        ups, c = [], 4 * g
        for _ in range(int(math.log2(size // (cfg.stage1_size // 4)))):
            ups.append(up_block(c, max(c // 2, 1)))
            c = max(c // 2, 1)
        self.ups = nn.Sequential(*ups)
        self.head = nn.Sequential(nn.Conv2d(c, 1, 3, padding=1, bias=False), nn.Tanh())

    def forward(self, image: torch.Tensor, text: torch.Tensor, eps: torch.Tensor):
        c, mu, logvar = self.ca(text, eps)
        h = self.encode(image)
        h = self.joint(torch.cat([h, c[:, :, None, None].expand(-1, -1, *h.shape[-2:])], dim=1))
        return self.head(self.ups(self.residual(h))), mu, logvar


class ViewGenerator(nn.Module):
    """One view's Stage-I and Stage-II. ``noise`` = [z, eps_I, eps_II] per case, [B, z_dim + 2 c_dim]."""

    def __init__(self, cfg: Config, size: int):
        super().__init__()
        self.split = (cfg.z_dim, cfg.c_dim, cfg.c_dim)
        self.stage1 = StageOneGenerator(cfg)
        self.stage2 = StageTwoGenerator(cfg, size)
        self.apply(dcgan_init)

    def forward(self, text: torch.Tensor, noise: torch.Tensor, stage: int):
        """(image, mu, logvar) of ``stage`` (1 or 2); Stage-II gets Stage-I's image without gradient."""
        z, eps1, eps2 = noise.split(self.split, dim=1)
        if stage == 1:
            return self.stage1(text, z, eps1)
        with torch.no_grad():
            sketch = self.stage1(text, z, eps1)[0]
        return self.stage2(sketch, text, eps2)


class Generators(nn.Module):
    """The text encoder and both views' generators (what ``generate`` uses and the checkpoints hold)."""

    def __init__(self, cfg: Config, vocab_size: int, size: int):
        super().__init__()
        self.encoder = get_text_encoder(cfg.encoder, cfg.text, vocab_size)
        self.frontal = ViewGenerator(cfg, size)
        self.lateral = ViewGenerator(cfg, size)
        self.frozen_encoder = cfg.text_embedding == "pretrained"

    def train(self, mode: bool = True) -> "Generators":
        super().train(mode)
        if self.frozen_encoder:  # a pretrained embedding stays in eval mode, as at generation time
            self.encoder.eval()
        return self

    def forward(self, findings, impression, flat, noise: torch.Tensor, stage: int):
        """((fake_f, mu_f, logvar_f), (fake_l, mu_l, logvar_l)) at ``stage``; the encoder is frozen in Stage-II
        (and in both stages when pretrained)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and stage == 1):
            text = self.encoder(TokenBatch(findings, impression, flat)).report
        return self.frontal(text, noise, stage), self.lateral(text, noise, stage)


# Discriminators.
class Discriminator(nn.Module):
    """v1 STAGE1_D / STAGE2_D for one channel at any size: logits [B, 1] (conditional) or [B, 2] (+ unconditional)."""

    def __init__(self, size: int, cfg: Config, uncond: bool):
        super().__init__()
        ndf, norm = cfg.ndf, cfg.d_norm
        layers, c = [nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)], ndf
        for _ in range(int(math.log2(size // 4)) - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), discriminator_norm(norm, 2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        while c > 8 * ndf:  # Stage-II at 256 px: 32 ndf -> 16 ndf -> 8 ndf
            layers += [
                nn.Conv2d(c, c // 2, 3, padding=1, bias=False),
                discriminator_norm(norm, c // 2),
                nn.LeakyReLU(0.2),
            ]
            c //= 2
        self.image = nn.Sequential(*layers)
        # An instance norm after the tiled mu would subtract it away (XRayGAN's critic bug): no norm there.
        batch = norm == "batch"
        self.cond = nn.Sequential(
            nn.Conv2d(c + cfg.c_dim, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c) if batch else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 1, 4, stride=4),
        )
        self.uncond = nn.Conv2d(c, 1, 4, stride=4) if uncond else None
        self.apply(dcgan_init)

    def forward(self, image: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        h = self.image(image)  # [B, 8ndf, 4, 4]
        logits = [self.cond(torch.cat([h, mu[:, :, None, None].expand(-1, -1, *h.shape[-2:])], dim=1))]
        if self.uncond is not None:
            logits.append(self.uncond(h))
        return torch.cat(logits, dim=1).flatten(1)  # [B, heads]


class Discriminators(nn.Module):
    """The frontal and the lateral D of one stage. Each (frontal, lateral, mu_f, mu_l) group is its own forward
    pass, as v1's separate real / wrong / fake passes (batch-norm statistics are never mixed across groups)."""

    def __init__(self, size: int, cfg: Config, uncond: bool):
        super().__init__()
        self.frontal = Discriminator(size, cfg, uncond)
        self.lateral = Discriminator(size, cfg, uncond)

    def forward(self, groups: list[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.frontal(f, mu_f), self.lateral(l, mu_l)) for f, l, mu_f, mu_l in groups]


# Losses.
def discriminator_loss(discriminators: nn.Module, real, fake, mu, wrong, cfg: Config) -> dict[str, torch.Tensor]:
    """Both views' D loss ("d") and its terms: the mean of the positive terms (real, conditional and
    unconditional) plus the mean of the negative ones (fake, mismatch, unconditional fake), as v1; WGAN-GP adds
    the penalty. ``mu`` = (mu_f, mu_l) detached; ``wrong`` = ((wrong_f, wrong_l), mask) or None."""
    groups = [(*real, *mu), (*fake, *mu)]
    if wrong is not None:
        groups.append((*real, *wrong[0]))
    if cfg.loss == "wgan_gp":
        interp = interpolates(real, fake)
        groups.append((*interp, *mu))
    scores = discriminators(groups)
    heads = scores[0][0].shape[1]  # 1 conditional, or 2 with the unconditional logit

    def terms(group: int, real_label: bool, head: int, weight=None) -> torch.Tensor:
        return sum(discriminator_term(s[:, head], real_label, cfg.loss, weight) for s in scores[group])

    positive = [terms(0, True, h) for h in range(heads)]
    negative = [terms(1, False, 0)]
    out = {"d_real": sum(positive) / heads, "d_fake": terms(1, False, 0)}
    if wrong is not None:
        out["d_mismatch"] = terms(2, False, 0, wrong[1])
        negative.append(out["d_mismatch"])
    if heads == 2:
        out["d_fake_uncond"] = terms(1, False, 1)
        negative.append(out["d_fake_uncond"])
    d = sum(positive) / len(positive) + sum(negative) / len(negative)
    if cfg.loss == "wgan_gp":
        out["gp"] = sum(gradient_penalty(s.sum(dim=1), x) for s, x in zip(scores[-1], interp))
        d = d + cfg.gp_weight * out["gp"]
    return {"d": d, **out}


def generator_adversarial(discriminators: nn.Module, fake, mu, cfg: Config) -> torch.Tensor:
    """Both views' adversarial G loss: every head's (BCE to "real", or -score), summed over heads as v1.

    mu is detached, as v1's ``compute_generator_loss`` (``cond = conditions.detach()``): the adversarial
    gradient reaches the images only, never the CA or the text encoder through D's condition input."""
    (scores,) = discriminators([(*fake, *(m.detach() for m in mu))])
    if cfg.loss == "bce":
        return sum(F.binary_cross_entropy_with_logits(s.float(), torch.ones_like(s.float())) * s.shape[1]
                   for s in scores)  # fmt: skip
    return sum(-s.float().mean(dim=0).sum() for s in scores)


# The method.
class StackGAN(FixedEmbedding, StagedMethod):
    paper_schedules = {"xraygan_protocol": XRAYGAN_SCHEDULE}
    variants = VARIANTS
    Config = Config

    def __init__(self, cfg: Config, vocab: Vocab, *, image_size: int = 256, device=None, seed: int = 0):
        super().__init__(cfg, vocab, image_size=image_size, device=device, seed=seed)
        if image_size <= cfg.stage1_size or image_size & (image_size - 1):
            raise ValueError(
                f"stackgan: image_size must be a power of two above stage1_size {cfg.stage1_size}, not {image_size}"
            )
        seed_everything(derive_seed(seed, "init"))
        self.generators = Generators(cfg, len(vocab), image_size).to(self.device)
        if cfg.channels_last:
            self.generators.to(memory_format=torch.channels_last)
        self._freeze_embedding()

    @property
    def noise_dim(self) -> int:
        return self.cfg.z_dim + 2 * self.cfg.c_dim

    # Training.
    @property
    def networks(self) -> nn.Module:
        return self.generators

    def phases(self) -> list[Phase]:
        cfg = self.cfg
        return [Phase(k, "gan", cfg.epochs[k - 1], cfg.batch_sizes[k - 1]) for k in (1, 2) if cfg.epochs[k - 1] > 0]

    def begin_stage(self, stage: int, train: PairedData, run_dir: Path) -> PairedStage:
        cfg, device, g = self.cfg, self.device, self.generators
        # Stage-I trains both Stage-I generators (and a jointly trained encoder); Stage-II only the Stage-II ones.
        g.requires_grad_(False)
        trained = [g.frontal.stage1, g.lateral.stage1] if stage == 1 else [g.frontal.stage2, g.lateral.stage2]
        if stage == 1 and self.cfg.text_embedding == "trained_jointly":
            trained.append(g.encoder)
        for module in trained:
            module.requires_grad_(True)
        size = cfg.stage1_size if stage == 1 else self.image_size
        seed_everything(derive_seed(self.seed, "discriminators", stage))  # the same Ds on a resumed run
        discriminators = Discriminators(size, cfg, uncond=stage == 2 and cfg.stage2_uncond).to(device)
        if cfg.channels_last:
            discriminators.to(memory_format=torch.channels_last)
        generators, discriminators_ddp = wrap_ddp(g, device), wrap_ddp(discriminators, device)
        opt_g = self._adam([p for m in trained for p in m.parameters()])
        opt_d = self._adam(discriminators.parameters())
        tokens = TokenBatch.of(train.tokens, device)
        real = resident_images(train.pixels, size, device)
        return PairedStage(
            stage, generators, opt_g, tokens, real,
            discriminators=discriminators, discriminators_ddp=discriminators_ddp, opt_d=opt_d,
        )  # fmt: skip

    def set_epoch(self, state: PairedStage, phase: Phase, epoch: int) -> None:  # lr x lr_decay at each milestone
        state.set_lr(self.cfg.lr * self.cfg.lr_decay ** sum(epoch >= m for m in self.cfg.lr_milestones))

    def train_step(self, state: PairedStage, phase: Phase, index: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(index) < 2:  # a last batch of one (train size mod batch size = 1): batch norm cannot train
            return {}
        g, stage = self.generators, state.stage
        g.train()
        if stage == 2:  # the frozen Stage-I (and encoder) run as at generation time
            for module in (g.encoder, g.frontal.stage1, g.lateral.stage1):
                module.eval()
        cfg, device = self.cfg, self.device
        generators, opt_g, opt_d = state.generators, state.opt_g, state.opt_d
        discriminators, discriminators_ddp = state.discriminators, state.discriminators_ddp
        batch, real = state.tokens[index], state.real[index]
        target = to_unit_range(real)  # [B, 2, H, W]
        if cfg.channels_last:
            target = target.contiguous(memory_format=torch.channels_last)
        real_views = (target[:, :1], target[:, 1:])
        noise = torch.randn(len(batch), self.noise_dim, device=device)
        with autocast(device, cfg):
            (fake_f, mu_f, logvar_f), (fake_l, mu_l, logvar_l) = generators(
                batch.findings, batch.impression, batch.flat, noise, stage
            )
        # Update the discriminators: real + match, real + mismatch, fake + match (detached fakes and mu).
        mu = (mu_f.detach(), mu_l.detach())
        wrong = None
        if cfg.mismatch_pairs:
            (wrong_f, mask), (wrong_l, _) = mismatched(mu[0], batch.flat), mismatched(mu[1], batch.flat)
            wrong = ((wrong_f, wrong_l), mask)
        with autocast(device, cfg):
            d = discriminator_loss(discriminators_ddp, real_views, (fake_f.detach(), fake_l.detach()), mu, wrong, cfg)
        opt_d.zero_grad(set_to_none=True)
        d["d"].backward()
        opt_d.step()
        losses = {k: v.detach() for k, v in d.items()}
        # Update the generators (and, in Stage-I, a jointly trained text encoder): one combined step for both views.
        with autocast(device, cfg):
            discriminators.requires_grad_(False)  # the plain module: DDP must not see a frozen forward
            adv = generator_adversarial(discriminators, (fake_f, fake_l), (mu_f, mu_l), cfg)
            discriminators.requires_grad_(True)
            loss_g = adv
            losses["adv"] = adv.detach()
            if cfg.kl_weight > 0:
                kl = kl_divergence(mu_f, logvar_f) + kl_divergence(mu_l, logvar_l)
                loss_g = loss_g + cfg.kl_weight * kl
                losses["kl"] = kl.detach()
            if cfg.l2_weight > 0:
                l2 = F.mse_loss(fake_f.float(), real_views[0]) + F.mse_loss(fake_l.float(), real_views[1])
                loss_g = loss_g + cfg.l2_weight * l2
                losses["l2"] = l2.detach()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        losses["generator"] = loss_g.detach()
        return losses

    def _adam(self, params) -> torch.optim.Adam:
        fused = self.device.type == "cuda"
        return torch.optim.Adam(params, lr=self.cfg.lr, betas=self.cfg.betas, fused=fused)

    # Sampling.
    def generate(self, tokens: Tokens, seeds: Sequence[int], batch_size: int = 64) -> Views:
        """One frontal + lateral pair per report (Stage-II output); ``seeds[i]`` fixes report i's z and CA noise,
        shared by its two views."""

        def views_of(batch, batch_seeds):
            noise = case_noise(batch_seeds, self.noise_dim, self.device)
            (f, _, _), (l, _, _) = self.generators(batch.findings, batch.impression, batch.flat, noise, 2)
            return f, l

        return generate_in_batches(self, tokens, seeds, batch_size, views_of)

    @classmethod
    def conditional_critics(cls, cfg: Config, image_size: int) -> dict[str, tuple]:
        """The conditional logit (column 0) of each stage's D, which takes mu (c_dim) as its condition."""
        out = {}
        for stage, size in ((1, cfg.stage1_size), (2, image_size)):
            d = Discriminator(size, cfg, uncond=stage == 2 and cfg.stage2_uncond).eval()
            out[f"D Stage-{'I' * stage} {size}px"] = (lambda x, mu, d=d: d(x, mu)[:, 0], size, cfg.c_dim)
        return out

    # Checkpoints: Method.state_dict / load_state_dict save and load ``self.generators``.
    def parameter_counts(self) -> dict[str, int]:
        g, cfg, s1, s2 = self.generators, self.cfg, self.cfg.stage1_size, self.image_size
        return {
            "text encoder": count_parameters(g.encoder),
            f"G_f Stage-I ({s1}px, with its CA)": count_parameters(g.frontal.stage1),
            f"G_f Stage-II ({s2}px, with its CA)": count_parameters(g.frontal.stage2),
            "G_l (same as G_f)": count_parameters(g.lateral),
            f"D Stage-I ({s1}px), per view": count_parameters(Discriminator(s1, cfg, uncond=False)),
            f"D Stage-II ({s2}px), per view": count_parameters(Discriminator(s2, cfg, uncond=cfg.stage2_uncond)),
        }
