"""GAN-INT-CLS: report -> HAE report vector -> [z, text projection] -> Res-Upsample generator -> frontal + lateral,
trained against matching-aware discriminators, with the interpolated-text (INT) term.

Paper: Reed, Akata, Yan, Logeswaran, Schiele, Lee, "Generative Adversarial Text to Image Synthesis" (ICML 2016):
GAN-CLS (the matching-aware discriminator of algorithm 1: real image + matching text is "real", real image +
mismatching text and fake image + matching text are "fake") and GAN-INT (the generator also learns from fakes
conditioned on interpolations of two text embeddings). Reference code: reedscot/icml2016 ``main_cls_int.lua``
(Lua Torch, MIT). A Table 1 baseline of Yang et al., XRayGAN (arXiv 2006.10552), where every method's text
encoder is the hierarchical attentional encoder (``hae``). Written from the paper and a reading of the reference
code; no code copied.

The defaults are Reed's objective and optimisation: D = BCE(real, 1) + cls * BCE(mismatch, 0) + (1 - cls) *
BCE(fake, 0) with cls 0.5; G = BCE(fake, 1) averaged over the B matching fakes plus B/2 fakes of interpolated
embeddings (t_a + t_b) / 2 between the two halves of the batch (weight ``interp_weight`` 1 on those); Adam 2e-4,
betas (0.5, 0.999), batch 64, 600 epochs, lr halved every 100 epochs; z 100-d, text projected to 128.

Departures from the original, each deliberate:
- Text: the shared HAE report vector (512-d) replaces Reed's 1024-d char-CNN-RNN embedding averaged over four
  captions (a case has one report). As Reed's, it is pretrained and fixed (``text_embedding = "pretrained"``):
  trained once on the train split to match reports with their image pairs (``methods/embedding.py``, a
  symmetric matching objective in the spirit of Reed's DS-SJE), then frozen. The interpolation is on this
  vector, as Reed's is on his embedding.
- Generator: XRayGAN's basic generator, as the XRayGAN authors' stand-in uses it (Reed's is a
  DCGAN at 64 px): [z, LeakyReLU(Linear(c -> 128))] -> Linear + LeakyReLU to ``g_width`` = 512 (where Reed's
  first deconvolution maps his 228-d input) -> log2(size) Res-Upsample blocks (8 at 256 px, 512 -> 2 channels)
  -> conv1x1 + tanh. No batch norm (as XRayGAN). He init with each residual branch starting at zero
  (``g_init = "he"``) instead of XRayGAN's PyTorch default, under which this norm-free generator's output is
  constant to 1e-5 at 256 px whatever z and the text: XRayGAN's L2 loss pulls it out of that, a pure GAN loss
  did not (at the tiny setting: saturated, report-blind images). ``g_init = "default"`` restores XRayGAN's.
- Discriminator: Reed's, for one channel and any size: log2(size / 4) stride-2 conv4x4 (channels doubling from
  64 to a cap of 8 x 64, where Reed has four convs at 64 px), the residual bottleneck at 4x4, the text projected
  to 128 (+ batch norm, LeakyReLU), tiled and joined by conv1x1, conv4x4 -> one logit. A LeakyReLU follows every
  intermediate conv (the notes list none after Reed's 4ndf conv). BCE on logits instead of sigmoid + BCE (the
  same loss, stable). Init N(0, 0.02) for convs and linears, N(1, 0.02) for batch-norm scales (DCGAN); convs
  before a norm have no bias (Reed zeroes those biases at every step).
- Mismatching text: the report of the previous case in the shuffled batch (the batch rolled by one, as
  StackGAN does; the reports have no classes to draw "wrong" images from). A pair whose two reports are the same
  token for token (normal studies often are) is a true match and is left out of the mismatch term.
- Two views: a generator and a discriminator per view, both views conditioned on the same report vector and
  the same z per case; one Adam over both discriminators, one over both generators (and a jointly trained encoder), one
  combined generator step per iteration (the views' losses summed).
- No image augmentation (Reed: load 76, random crop 64): xbench's image pipeline is shared by every method.
- The B/2 interpolated fakes take fresh z and enter the generator loss only (as Reed; the discriminator
  never sees them).

Variant ``xraygan_protocol`` (config values, ``VARIANTS``): the XRayGAN authors' stand-in is a
WGAN-GP critic plus 100 x pixel L2 with neither the CLS nor the INT term. Here: ``loss = "wgan_gp"`` (critic
E[D(fake)] - E[D(real)] + 10 x gradient penalty, generator -E[D(fake)]), ``d_norm = "instance"`` (batch norm
breaks the per-sample penalty; the layers that see the tiled text get no norm, since an instance norm would
cancel the condition, the authors' critic bug), ``cls_weight = interp_weight = 0``, ``l2_weight = 100``,
Adam betas (0.9, 0.999) and ``text_embedding = "trained_jointly"`` (the HAE from random weights, trained by the
generator loss only: the discriminator step sees it detached). The networks stay this file's (the authors'
had no z and XRayGAN's critic). Their schedule (20 L2 warm-up epochs, 150 GAN epochs, batch 24, lr 1e-4 x 0.2
at epochs 40 and 80) is ``XRAYGAN_SCHEDULE``, for a paper-scale config: it is not in the variant, so the tiny
setting plus a variant stays tiny.
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
    BaseGenerator,
    case_noise,
    check_discriminator_loss,
    dcgan_init,
    discriminator_norm,
    discriminator_term,
    gradient_penalty,
    he_init,
    interpolates,
    mismatched,
)
from methods.text_encoders import get_text_encoder
from methods.training import PairedStage, Phase, StagedMethod, autocast, generate_in_batches

VARIANTS = {
    "faithful": {},
    "xraygan_protocol": {  # the XRayGAN authors' objective: the CLS and INT terms off
        "loss": "wgan_gp",
        "d_norm": "instance",
        "cls_weight": 0.0,
        "interp_weight": 0.0,
        "l2_weight": 100.0,
        "betas": (0.9, 0.999),
        "text_embedding": "trained_jointly",
    },
}
# The authors' optimisation schedule for their stand-in (``config/Openi_wgan.json``), for paper-scale configs.
XRAYGAN_SCHEDULE = {
    "batch_size": 24,
    "epochs": 170,  # their 20 L2 warm-up + 150 GAN epochs, all GAN epochs: Table 1a has one protocol, no warm-up
    "warmup_epochs": 0,
    "lr": 1e-4,
    "lr_decay": 0.2,
    "lr_milestones": (40, 80),
}


@dataclasses.dataclass(frozen=True)
class Config(MethodConfig):
    # Text.
    encoder: str = "hae"
    text: TextEncoder.Config = TextEncoder.Config()
    # "pretrained": matched to the images on the train split, then frozen (Reed's fixed embedding; see
    # methods/embedding.py) | "trained_jointly": from random weights, by the generator loss
    text_embedding: str = "pretrained"
    embedding: EmbeddingConfig = EmbeddingConfig()
    # Generators.
    z_dim: int = 100  # Reed's nz
    text_proj: int = 128  # Reed's nt: the report vector projected before joining z
    g_width: int = 512  # channels of the 1x1 map entering the Res-Upsample blocks (XRayGAN's G0 input)
    g_init: str = "he"  # "he" (variance-preserving, residual branches start at zero) | "default" (PyTorch's)
    # Discriminators.
    ndf: int = 64
    d_text: int = 128  # Reed's D text projection
    d_norm: str = "batch"  # "batch" (Reed) | "instance" (WGAN-GP critics)
    # Objective.
    loss: str = "bce"  # "bce" (Reed) | "wgan_gp" (the XRayGAN authors' stand-in)
    cls_weight: float = 0.5  # weight of (real image, mismatching text) among the negatives; 0 = no CLS
    interp_weight: float = 1.0  # weight of the interpolated-text fakes in the G loss; 0 = no INT
    l2_weight: float = 0.0  # pixel MSE per view (the XRayGAN authors: 100)
    gp_weight: float = 10.0  # WGAN-GP lambda (loss = "wgan_gp" only)
    # Optimisation (Reed: batch 64, 600 epochs, Adam 2e-4 (0.5, 0.999), lr x 0.5 every 100 epochs).
    batch_size: int = 64
    epochs: int = 600
    warmup_epochs: int = 0  # L2-only epochs before the GAN (the XRayGAN authors: 20)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_decay: float = 0.5
    lr_milestones: tuple[int, ...] = (100, 200, 300, 400, 500)  # GAN epochs at which lr *= lr_decay
    # Speed (checkpoints, logging and bf16: MethodConfig).
    channels_last: bool = True

    def __post_init__(self):
        check_ranges(self)
        check_text_embedding("gan_int_cls", self.text_embedding)
        if self.g_init not in ("he", "default"):
            raise ValueError(f"gan_int_cls: g_init must be 'he' or 'default', not {self.g_init!r}")
        check_discriminator_loss("gan_int_cls", self.loss, self.d_norm)
        if not 0 <= self.cls_weight < 1:
            raise ValueError(f"gan_int_cls: cls_weight must be in [0, 1), not {self.cls_weight}")
        if self.warmup_epochs > 0 and self.l2_weight <= 0:
            raise ValueError("gan_int_cls: warm-up epochs train on the L2 loss alone; set l2_weight > 0")


# Generators.
class ViewGenerator(nn.Module):
    """One view's G: [z, LeakyReLU(Linear(c))] -> Linear -> XRayGAN's Res-Upsample generator -> [B, 1, size, size]."""

    def __init__(self, cfg: Config, size: int):
        super().__init__()
        self.text = nn.Sequential(nn.Linear(cfg.text.out_dim, cfg.text_proj), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(nn.Linear(cfg.z_dim + cfg.text_proj, cfg.g_width), nn.LeakyReLU(0.2))
        self.body = BaseGenerator(cfg.g_width, size)
        if cfg.g_init == "he":
            he_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.body(self.joint(torch.cat([z, self.text(c)], dim=1)))


def interpolated(c: torch.Tensor) -> torch.Tensor:
    """Reed's INT embeddings: midpoints between the first and the second half of the batch, [B // 2, D]."""
    n = len(c) // 2
    return (c[:n] + c[n : 2 * n]) / 2


class Generators(nn.Module):
    """The text encoder and both views' generators; the generator optimiser trains them all but a pretrained,
    frozen encoder."""

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

    def forward(self, findings, impression, flat, z: torch.Tensor, interp: bool = False):
        """Fakes of both views and their conditions [B (+ B // 2), D]: the reports, then (``interp``) midpoints.

        ``z`` has one row per condition: B, or B + B // 2 with ``interp``.
        """
        c = self.encoder(TokenBatch(findings, impression, flat)).report
        if interp:
            c = torch.cat([c, interpolated(c)])
        return self.frontal(z, c), self.lateral(z, c), c


# Discriminators.
class Discriminator(nn.Module):
    """Reed's matching-aware D for one channel at any size: image -> 8ndf x 4 x 4 (+ residual bottleneck), text
    projection tiled beside, conv1x1, conv4x4 -> one logit [B]."""

    def __init__(self, size: int, cfg: Config):
        super().__init__()
        cap, norm = 8 * cfg.ndf, cfg.d_norm
        downs = int(math.log2(size // 4))
        layers, c = [nn.Conv2d(1, cfg.ndf, 4, 2, 1), nn.LeakyReLU(0.2)], cfg.ndf
        for k in range(1, downs):
            nxt = min(2 * c, cap)
            layers += [nn.Conv2d(c, nxt, 4, 2, 1, bias=False), discriminator_norm(norm, nxt)]
            layers += [nn.LeakyReLU(0.2)] if k < downs - 1 else []  # the last joins the bottleneck first
            c = nxt
        self.image = nn.Sequential(*layers)
        w = c // 4
        self.bottleneck = nn.Sequential(
            nn.Conv2d(c, w, 1, bias=False), discriminator_norm(norm, w), nn.LeakyReLU(0.2),
            nn.Conv2d(w, w, 3, padding=1, bias=False), discriminator_norm(norm, w), nn.LeakyReLU(0.2),
            nn.Conv2d(w, c, 3, padding=1, bias=False), discriminator_norm(norm, c),
        )  # fmt: skip
        # An instance norm after the tiled text would subtract it away (XRayGAN's critic bug): no norm there.
        batch = norm == "batch"
        self.text = nn.Sequential(
            nn.Linear(cfg.text.out_dim, cfg.d_text, bias=not batch),
            nn.BatchNorm1d(cfg.d_text) if batch else nn.Identity(),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Sequential(
            nn.Conv2d(c + cfg.d_text, c, 1, bias=not batch),
            nn.BatchNorm2d(c) if batch else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 1, 4),
        )
        self.apply(dcgan_init)

    def forward(self, image: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.image(image)
        h = F.leaky_relu(h + self.bottleneck(h), 0.2)  # [B, 8ndf, 4, 4]
        text = self.text(c)[:, :, None, None].expand(-1, -1, *h.shape[-2:])
        return self.head(torch.cat([h, text], dim=1)).flatten()  # [B]


class Discriminators(nn.Module):
    """The frontal and the lateral D. Each (frontal, lateral, text) group is its own forward pass, as Reed's
    separate real / mismatch / fake passes (batch-norm statistics are never mixed across groups)."""

    def __init__(self, size: int, cfg: Config):
        super().__init__()
        self.frontal = Discriminator(size, cfg)
        self.lateral = Discriminator(size, cfg)

    def forward(self, groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> list[tuple]:
        return [(self.frontal(f, c), self.lateral(l, c)) for f, l, c in groups]


# Losses.
def discriminator_loss(
    discriminators: nn.Module,
    real: tuple[torch.Tensor, torch.Tensor],
    fake: tuple[torch.Tensor, torch.Tensor],
    c: torch.Tensor,
    wrong: tuple[torch.Tensor, torch.Tensor] | None,
    cfg: Config,
) -> dict[str, torch.Tensor]:
    """Both views' D loss ("d") and its terms. ``wrong`` is (mismatching text, mask) from ``mismatched``; it is
    used when ``cfg.cls_weight > 0``. Reed: real + cls x mismatch + (1 - cls) x fake; WGAN-GP adds the penalty."""
    groups = [(*real, c), (*fake, c)]
    use_cls = cfg.cls_weight > 0 and wrong is not None
    if use_cls:
        groups.append((*real, wrong[0]))
    if cfg.loss == "wgan_gp":
        interp = interpolates(real, fake)
        groups.append((*interp, c))
    scores = discriminators(groups)
    terms = {
        "d_real": sum(discriminator_term(s, True, cfg.loss) for s in scores[0]),
        "d_fake": sum(discriminator_term(s, False, cfg.loss) for s in scores[1]),
    }
    d = terms["d_real"] + (1 - (cfg.cls_weight if use_cls else 0.0)) * terms["d_fake"]
    if use_cls:
        terms["d_mismatch"] = sum(discriminator_term(s, False, cfg.loss, wrong[1]) for s in scores[2])
        d = d + cfg.cls_weight * terms["d_mismatch"]
    if cfg.loss == "wgan_gp":
        terms["gp"] = sum(gradient_penalty(s, x) for s, x in zip(scores[-1], interp))
        d = d + cfg.gp_weight * terms["gp"]
    return {"d": d, **terms}


def generator_adversarial(discriminators: nn.Module, fake, conds: torch.Tensor, n: int, cfg: Config) -> dict:
    """Both views' adversarial G loss ("adv_total"): the first ``n`` fakes have the reports' conditions, the rest
    (if any) interpolated ones with weight ``interp_weight``; Reed averages over all 1.5 B. Also the two parts."""
    scores = discriminators([(*fake, conds)])[0]
    per = [F.binary_cross_entropy_with_logits(s.float(), torch.ones_like(s.float()), reduction="none")
           if cfg.loss == "bce" else -s.float() for s in scores]  # fmt: skip
    weight = torch.ones(len(conds), device=conds.device)
    weight[n:] = cfg.interp_weight
    out = {"adv_total": sum((p * weight).sum() / len(conds) for p in per), "adv": sum(p[:n].mean() for p in per)}
    if len(conds) > n:
        out["int"] = sum(p[n:].mean() for p in per)
    return out


# The method.
class GanIntCls(FixedEmbedding, StagedMethod):
    paper_schedules = {"xraygan_protocol": XRAYGAN_SCHEDULE}
    variants = VARIANTS
    Config = Config

    def __init__(self, cfg: Config, vocab: Vocab, *, image_size: int = 256, device=None, seed: int = 0):
        super().__init__(cfg, vocab, image_size=image_size, device=device, seed=seed)
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"gan_int_cls: image_size must be a power of two >= 8, not {image_size}")
        seed_everything(derive_seed(seed, "init"))
        self.generators = Generators(cfg, len(vocab), image_size).to(self.device)
        if cfg.channels_last:
            self.generators.to(memory_format=torch.channels_last)
        self._freeze_embedding()

    # Training.
    @property
    def networks(self) -> nn.Module:
        return self.generators

    def phases(self) -> list[Phase]:
        cfg = self.cfg
        warmup = [Phase(0, "warmup", cfg.warmup_epochs, cfg.batch_size)] if cfg.warmup_epochs > 0 else []
        return warmup + [Phase(0, "gan", cfg.epochs, cfg.batch_size)]

    def begin_stage(self, stage: int, train: PairedData, run_dir: Path) -> PairedStage:
        cfg, device = self.cfg, self.device
        seed_everything(derive_seed(self.seed, "discriminators", stage))  # the same Ds on a resumed run
        discriminators = Discriminators(self.image_size, cfg).to(device)
        if cfg.channels_last:
            discriminators.to(memory_format=torch.channels_last)
        generators, discriminators_ddp = wrap_ddp(self.generators, device), wrap_ddp(discriminators, device)
        opt_g, opt_d = self._adam(self.generators), self._adam(discriminators)  # a frozen encoder is left out
        tokens = TokenBatch.of(train.tokens, device)
        real = resident_images(train.pixels, self.image_size, device)
        return PairedStage(
            stage, generators, opt_g, tokens, real,
            discriminators=discriminators, discriminators_ddp=discriminators_ddp, opt_d=opt_d,
        )  # fmt: skip

    def set_epoch(self, state: PairedStage, phase: Phase, epoch: int) -> None:  # lr x lr_decay at each milestone
        passed = sum(epoch >= m for m in self.cfg.lr_milestones) if phase.name == "gan" else 0
        state.set_lr(self.cfg.lr * self.cfg.lr_decay**passed)

    def train_step(self, state: PairedStage, phase: Phase, index: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(index) < 2 and phase.name == "gan":  # a last batch of one: D's batch norm cannot train on it
            return {}
        cfg, device = self.cfg, self.device
        generators, opt_g, opt_d = state.generators, state.opt_g, state.opt_d
        discriminators, discriminators_ddp = state.discriminators, state.discriminators_ddp
        batch, real, phase = state.tokens[index], state.real[index], phase.name
        target = to_unit_range(real)  # [B, 2, H, W]
        if cfg.channels_last:
            target = target.contiguous(memory_format=torch.channels_last)
        real_f, real_l = target[:, :1], target[:, 1:]
        b = len(batch)
        interp = phase == "gan" and cfg.interp_weight > 0 and b >= 2
        z = torch.randn(b + (b // 2 if interp else 0), cfg.z_dim, device=device)
        with autocast(device, cfg):
            fake_f, fake_l, conds = generators(batch.findings, batch.impression, batch.flat, z, interp)
        losses = {}
        if phase == "gan":
            # Update the discriminators: real + match, real + mismatch, fake + match (detached fakes and text).
            c = conds[:b].detach()
            with autocast(device, cfg):
                d = discriminator_loss(
                    discriminators_ddp,
                    (real_f, real_l),
                    (fake_f[:b].detach(), fake_l[:b].detach()),
                    c,
                    mismatched(c, batch.flat),
                    cfg,
                )
            opt_d.zero_grad(set_to_none=True)
            d["d"].backward()
            opt_d.step()
            losses.update({k: v.detach() for k, v in d.items()})
        # Update the generators (and a jointly trained text encoder): one combined step for both views.
        with autocast(device, cfg):
            loss_g = torch.zeros((), device=device)
            if phase == "gan":
                discriminators.requires_grad_(False)  # the plain module: DDP must not see a frozen forward
                adv = generator_adversarial(discriminators, (fake_f, fake_l), conds, b, cfg)
                discriminators.requires_grad_(True)
                loss_g = loss_g + adv.pop("adv_total")
                losses.update({k: v.detach() for k, v in adv.items()})
            if cfg.l2_weight > 0:
                l2 = F.mse_loss(fake_f[:b].float(), real_f) + F.mse_loss(fake_l[:b].float(), real_l)
                loss_g = loss_g + cfg.l2_weight * l2
                losses["l2"] = l2.detach()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        losses["generator"] = loss_g.detach()
        return losses

    def _adam(self, module: nn.Module) -> torch.optim.Adam:
        fused = self.device.type == "cuda"
        params = [p for p in module.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.cfg.lr, betas=self.cfg.betas, fused=fused)

    # Sampling.
    def generate(self, tokens: Tokens, seeds: Sequence[int], batch_size: int = 64) -> Views:
        """One frontal + lateral pair per report; ``seeds[i]`` fixes report i's z (shared by its two views)."""

        def views_of(batch, batch_seeds):
            z = case_noise(batch_seeds, self.cfg.z_dim, self.device)
            f, l, _ = self.generators(batch.findings, batch.impression, batch.flat, z)
            return f, l

        return generate_in_batches(self, tokens, seeds, batch_size, views_of)

    # Checkpoints: Method.state_dict / load_state_dict save and load ``self.generators``.
    @classmethod
    def conditional_critics(cls, cfg: Config, image_size: int) -> dict[str, tuple]:
        return {f"D {image_size}px": (Discriminator(image_size, cfg).eval(), image_size, cfg.text.out_dim)}

    def parameter_counts(self) -> dict[str, int]:
        g, size = self.generators, self.image_size
        return {
            "text encoder": count_parameters(g.encoder),
            f"G_f ({size}px)": count_parameters(g.frontal),
            "G_l (same as G_f)": count_parameters(g.lateral),
            f"D ({size}px), per view": count_parameters(Discriminator(size, self.cfg)),
        }
