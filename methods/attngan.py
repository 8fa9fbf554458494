"""AttnGAN: report -> frozen DAMSM text encoder -> attentional multi-stage GAN -> frontal + lateral.

Paper: Xu, Zhang, Huang, Zhang, Gan, Huang, He, "AttnGAN: Fine-Grained Text to Image Generation with
Attentional Generative Adversarial Networks" (CVPR 2018). Reference code: taoxugit/AttnGAN (MIT;
``code/model.py`` G_NET / D_NET64/128/256 / CNN_ENCODER, ``code/GlobalAttention.py``, ``code/miscc/losses.py``,
``code/trainer.py``, ``code/pretrain_DAMSM.py``, ``code/cfg/bird_attn2.yml``). Written from the notes in
``shared/research/xraygan_reference.md`` sections 11.3 and 12.4; no code is copied.

The method (defaults = the original's birds setting, where the X-ray data leaves a choice):
1. DAMSM pretraining (a step of ``fit``, before the GAN; cached in ``run_dir/damsm/damsm.pt`` with its
   sha256 like XRayGAN's VCN): the text encoder and one image encoder per view are trained on the TRAIN
   split with the word-level (gamma1 4, gamma2 5, gamma3 10) and sentence-level matching losses, both
   directions, Adam lr 2e-3 betas (0.5, 0.999), a new optimiser every epoch with lr x 0.98 (floor lr/10),
   text-encoder gradient norm clipped at 0.25, batch 48, 600 epochs. Then both are frozen.
2. The generator per view: conditioning augmentation (Linear + GLU -> mu, logvar; c = mu + sigma eps) and
   z ~ N(0, I) (100) -> FC -> (16 gf) x 4 x 4 -> GLU up-blocks -> gf x 64 x 64; then per later stage an
   attention module (words projected to gf channels, per-pixel softmax over the words, padding masked) whose
   word context is concatenated to the features -> R_NUM GLU residual blocks -> up-block; a conv3x3 + tanh
   image head per stage (64, 128, 256 px). Orthogonal initialisation; the generator used for sampling is
   the exponential moving average (0.999) of the trained one, as the reference saves it.
3. Per stage and view a discriminator: a 16x down-sampling trunk (+ down and 3x3 blocks at 128 / 256 px),
   an unconditional and a conditional logit (the report vector tiled 4x4, conv3x3, conv4x4 s4). BCE:
   D = (real_u + real_c) / 2 + (fake_u + fake_c + wrong_c) / 3 (wrong = real image with the next case's
   report); G = sum over stages of (uncond + cond) + lambda (DAMSM words + sentence, on the final image)
   + KL. Adam 2e-4, betas (0.5, 0.999); GF 32, DF 64, Z 100, condition 100, R_NUM 2, batch 20, 600
   epochs, lambda 5 (the birds value; COCO used 50).

Both views: two generators of the same architecture, conditioned on the same report vector and words and
the same noise z per case (each has its own conditioning augmentation), each with its own discriminators
and its own DAMSM image encoder; no view-consistency network (that is XRayGAN's contribution).

Departures from the original, each deliberate:
- Text encoder: the shared ``hae`` (the paper's fair comparison). Its report vector is the sentence
  feature (512-d) and its word-level BiLSTM outputs the word features (256-d); the original's BiLSTM
  (embedding 300, 18 words per caption) is not re-implemented. Words are moved to the front of each row
  (padding dropped) before attention; the attention itself masks padding exactly as the original.
- DAMSM image encoder: the original is ImageNet-pretrained Inception-v3, frozen except its two new
  projections. No pretrained weights can be downloaded here, so the backbone (``damsm.backbone``:
  torchvision Inception-v3 by default, with a 1-channel first conv, input upsampled to 299 as the
  original; or ResNet-18; or a small CNN for CPU tests) starts from a random initialisation and is trained
  entirely by the DAMSM pretraining. No crop / flip augmentation (left and right matter in a report).
- DAMSM negatives: the original masks same-class pairs; reports have no classes, so pairs whose reports
  are identical token for token (many normal reports are) are masked instead. The same rule removes a
  "wrong" pair whose shifted report equals the case's own from the discriminator's wrong term.
- Word-level score: log sum_t exp(gamma2 R(c_t, e_t)) as the reference code (the paper also raises the sum
  to 1/gamma2); padding words are excluded as the reference does by cutting at the caption length.
- Logits go through BCE-with-logits (the reference: sigmoid + BCELoss; the same loss, stabler).
- All discriminators share one Adam (the reference: one Adam per discriminator; identical updates, since
  Adam is per parameter and each discriminator's loss touches only its own weights).
- fit_staged keeps an epoch's last incomplete batch (the reference drops it); a batch of one is skipped
  (batch norm needs two samples).
- Both views' KL terms are summed (one per conditioning augmentation); the DAMSM term is summed over views.
- The DAMSM is pretrained on the real images at the final stage size (antialiased resizes; the Inception
  backbone upsamples them to 299); lower-stage targets are antialiased resizes too (XRayGAN's runs:
  nearest neighbour).
- Several processes (DDP): batch norm becomes SyncBatchNorm on CUDA (statistics over the global batch, as
  on one GPU), every rank takes rank 0's DAMSM file, and BN buffers are broadcast from rank 0 after fit.
- Stage sizes other than 64 / 128 / 256 (the tiny setting's 32 / 64): the initial stage has
  log2(size / 4) up-blocks, and a discriminator's trunk has log2(size / 4) down-sampling convolutions
  followed by 3x3 blocks back to 8 DF channels; at 64 / 128 / 256 this is the original's layout.

Variant ``xraygan_protocol`` (``VARIANTS``): AttnGAN as the XRayGAN authors ran it (section 11.3), as
config values: the text encoder (here the HAE; theirs a flat BiLSTM) is random and frozen (no DAMSM at
all), no z, condition 128, no KL, unconditional discriminators with instance norm instead of batch norm
(a per-sample gradient penalty is wrong when batch statistics mix the samples; the other baselines refuse
WGAN-GP with batch norm alike), WGAN-GP (lambda 10) per stage + 100 x L2
per stage, Adam betas (0.9, 0.999); no moving average (their trainer is not known to keep one). Their
schedule (Adam 1e-4, lr x 0.2 at epochs 40 and 80, 150 epochs, batch 20) is ``XRAYGAN_SCHEDULE``, applied
with the variant at the paper setting (``paper_schedules``).
"""

import copy
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models.inception import BasicConv2d, Inception3

from benchmark.text import Tokens, Vocab
from methods.base import Method, PairedData, TextEncoder, TokenBatch, Views, count_parameters, to_unit_range
from methods.layers import check_discriminator_loss, discriminator_norm, interpolates, wgan_gp_loss
from methods.text_encoders import get_text_encoder
from methods.training import (
    JsonlLog,
    Phase,
    Stage,
    autocast,
    barrier,
    derive_seed,
    fit_staged,
    load_checkpoint,
    resident_images,
    save_checkpoint,
    seed_everything,
    unwrap,
    world,
    wrap_ddp,
)

VIEWS = ("frontal", "lateral")

VARIANTS = {
    "faithful": {},  # the original AttnGAN objective (DAMSM, CA + KL, conditional + unconditional BCE)
    "xraygan_protocol": {  # as the XRayGAN authors ran it (reference notes, section 11.3)
        "text_training": "frozen_random",
        "damsm_weight": 0.0,
        "z_dim": 0,
        "condition_dim": 128,
        "kl_weight": 0.0,
        "d_condition": False,
        "loss": "wgan_gp",
        "d_norm": "instance",  # batch norm mixes the samples whose gradients the penalty takes one by one
        "l2_weight": 100.0,
        "betas": (0.9, 0.999),
        "ema_decay": 0.0,
    },
}
# The authors' optimisation schedule for their stand-in, applied with the variant at the paper setting only
# (``Method.paper_schedules``), so ``tiny()`` + variant stays tiny.
XRAYGAN_SCHEDULE = {"lr_g": 1e-4, "lr_d": 1e-4, "lr_milestones": (40, 80), "epochs": 150, "batch_size": 20}


@dataclasses.dataclass(frozen=True)
class DAMSMConfig:
    """The DAMSM and its pretraining (the reference's ``cfg/DAMSM/bird.yml`` and ``pretrain_DAMSM.py``)."""

    backbone: str = "inception_v3"  # "inception_v3" | "resnet18" | "small" (random init: see the docstring)
    width: int = 32  # channels of the first "small" layer (ignored by the torchvision backbones)
    gamma1: float = 4.0  # word -> region attention sharpness
    gamma2: float = 5.0  # word relevance aggregation
    gamma3: float = 10.0  # similarity scale in the batch softmax
    epochs: int = 600
    batch_size: int = 48
    lr: float = 2e-3  # a new Adam every epoch; lr x lr_decay per epoch while above lr / 10
    lr_decay: float = 0.98
    betas: tuple[float, float] = (0.5, 0.999)
    grad_clip: float = 0.25  # max gradient norm of the text encoder

    def __post_init__(self):
        if self.backbone not in ("inception_v3", "resnet18", "small"):  # the keys of BACKBONES below
            raise ValueError(
                f"attngan: damsm.backbone must be 'inception_v3', 'resnet18' or 'small', not {self.backbone!r}"
            )


@dataclasses.dataclass(frozen=True)
class Config:
    # Text.
    encoder: str = "hae"  # key in TEXT_ENCODERS
    text: TextEncoder.Config = TextEncoder.Config()
    text_training: str = "damsm"  # "damsm": pretrained with the DAMSM, then frozen | "frozen_random" (XRayGAN's)
    damsm: DAMSMConfig = DAMSMConfig()
    # Generators.
    stage_sizes: tuple[int, ...] = (64, 128, 256)  # px; each stage doubles
    gf_dim: int = 32  # GF_DIM: channels of every stage after the first (the first starts at gf x 2^blocks)
    z_dim: int = 100  # noise size; 0 = no noise
    condition_dim: int = 100  # conditioning augmentation output
    res_blocks: int = 2  # R_NUM per attention stage
    # Discriminators.
    df_dim: int = 64
    d_condition: bool = True  # True: conditional + unconditional logits (the original); False: unconditional
    d_norm: str = "batch"  # "batch" (the original) | "instance" (WGAN-GP critics: a per-sample penalty)
    # Losses.
    loss: str = "bce"  # "bce" (the original) | "wgan_gp" (XRayGAN's runs)
    damsm_weight: float = 5.0  # lambda (birds 5, COCO 50); 0 = no DAMSM term
    kl_weight: float = 1.0
    l2_weight: float = 0.0  # per stage and view pixel L2 (XRayGAN's runs: 100)
    gp_weight: float = 10.0  # WGAN-GP only
    # Optimisation.
    batch_size: int = 20
    epochs: int = 600
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_milestones: tuple[int, ...] = ()  # epochs at which both learning rates are multiplied by lr_decay
    lr_decay: float = 0.2
    ema_decay: float = 0.999  # moving average of the generator weights used for sampling; 0 = off
    # Bookkeeping.
    checkpoint_every: int = 20  # epochs; and always at the end
    log_every: int = 50  # steps between host syncs / log lines
    channels_last: bool = True
    bf16: bool = True  # autocast on CUDA only
    progress: bool = True

    def __post_init__(self):
        sizes = self.stage_sizes
        if not sizes or sizes[0] < 8 or sizes[0] & (sizes[0] - 1):
            raise ValueError(f"attngan: the first stage size must be a power of two >= 8, got {sizes}")
        if any(b != 2 * a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"attngan: each stage must double the size, got {sizes}")
        if self.text_training not in ("damsm", "frozen_random"):
            raise ValueError(f"attngan: text_training must be 'damsm' or 'frozen_random', not {self.text_training!r}")
        if self.damsm_weight > 0 and self.text_training != "damsm":
            raise ValueError("attngan: damsm_weight > 0 needs text_training = 'damsm' (a pretrained DAMSM)")
        check_discriminator_loss("attngan", self.loss, self.d_norm)
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"attngan: ema_decay must be in [0, 1), not {self.ema_decay}")

    @classmethod
    def tiny(cls) -> "Config":
        """Two stages (32, 64 px), narrow networks, a small-CNN DAMSM: under a minute on 512 phantom cases
        on 2 CPU cores."""
        return cls(
            text=TextEncoder.Config(embed_dim=32, hidden=32, out_dim=64),
            damsm=DAMSMConfig(backbone="small", width=16, epochs=4, batch_size=32),
            stage_sizes=(32, 64),
            gf_dim=8,
            z_dim=16,
            condition_dim=16,
            res_blocks=1,
            df_dim=8,
            batch_size=32,
            epochs=2,
            lr_g=1e-3,
            lr_d=1e-3,
            ema_decay=0.9,
            checkpoint_every=2,
            log_every=10,
            progress=False,
        )


# Shared pieces.
def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over ``dim`` where ``mask`` is True; exactly zero elsewhere, and a zero row where nothing is."""
    scores = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.softmax(scores, dim=dim) * mask  # exp(min - max) underflows to 0 on the masked entries


def compact_words(words: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's real words first (order kept), cut to the longest row: [B, L', D], [B, L'].

    The HAE lays words out sentence slot by sentence slot, so most of its [B, S*W] positions are padding;
    masked attention ignores them anyway, this only saves the compute (one host sync for L').
    """
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    length = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
    order = order[:, :length]
    return words.gather(1, order[..., None].expand(-1, -1, words.shape[-1])), mask.gather(1, order)


@dataclasses.dataclass(frozen=True)
class Text:
    """The text encoder's output for some reports (words compacted with ``compact_words``)."""

    report: torch.Tensor  # [N, D] the sentence feature
    words: torch.Tensor  # [N, L, Dw]
    mask: torch.Tensor  # [N, L] bool
    flat: torch.Tensor  # [N, T] token ids, to find identical reports

    def select(self, index: torch.Tensor) -> "Text":
        words, mask = self.words[index], self.mask[index]
        length = max(int(mask.sum(1).max()), 1)  # words are compacted: trim to this batch's longest
        return Text(self.report[index], words[:, :length], mask[:, :length], self.flat[index])


def identical_reports(flat: torch.Tensor) -> torch.Tensor:
    """[B, B] bool: the reports of i and j are token for token the same (True on the diagonal)."""
    return (flat[:, None, :] == flat[None, :, :]).all(-1)


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


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)), averaged over the elements (as the reference)."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).mean()


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
def down_block(cin: int, cout: int, norm: str | None = "batch") -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
    return layers + ([discriminator_norm(norm, cout)] if norm else []) + [nn.LeakyReLU(0.2)]


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


# DAMSM.
class SmallBackbone(nn.Module):
    """A few strided convolutions (CPU tests only): regions at 1/16 of the input, a pooled global code."""

    def __init__(self, width: int):
        super().__init__()
        w = width
        self.local = nn.Sequential(
            *down_block(1, w, norm=None), *down_block(w, 2 * w), *down_block(2 * w, 4 * w), *down_block(4 * w, 8 * w)
        )
        self.glob = nn.Sequential(*down_block(8 * w, 16 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.local_dim, self.global_dim = 8 * w, 16 * w

    def forward(self, x):
        local = self.local(x)
        return local, self.glob(local)


class ResNetBackbone(nn.Module):
    """torchvision ResNet-18 (random init, 1-channel conv1): regions from layer3 (1/16), code from layer4."""

    def __init__(self, width: int):
        super().__init__()
        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.local = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
        self.glob = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.local_dim, self.global_dim = 256, 512

    def forward(self, x):
        local = self.local(x)
        return local, self.glob(local)


class InceptionBackbone(nn.Module):
    """torchvision Inception-v3 (random init, 1-channel first conv), input upsampled to 299 as the reference:
    regions from Mixed_6e (768 x 17 x 17), code from the final 2048-d pool."""

    def __init__(self, width: int):
        super().__init__()
        net = Inception3(aux_logits=False, init_weights=True)
        net.Conv2d_1a_3x3 = BasicConv2d(1, 32, kernel_size=3, stride=2)
        names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
        names += ["maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d"]
        self.local = nn.Sequential(*[getattr(net, n) for n in names + ["Mixed_6e"]])
        self.glob = nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.local_dim, self.global_dim = 768, 2048

    def forward(self, x):
        local = self.local(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))
        return local, self.glob(local)


BACKBONES = {"inception_v3": InceptionBackbone, "resnet18": ResNetBackbone, "small": SmallBackbone}


class ImageEncoder(nn.Module):
    """The DAMSM image encoder (the reference's CNN_ENCODER): regions [B, R, Dw] and a code [B, D]."""

    def __init__(self, cfg: DAMSMConfig, word_dim: int, text_dim: int):
        super().__init__()
        self.backbone = BACKBONES[cfg.backbone](cfg.width)
        self.regions = nn.Conv2d(self.backbone.local_dim, word_dim, 1, bias=False)
        self.code = nn.Linear(self.backbone.global_dim, text_dim)
        nn.init.uniform_(self.regions.weight, -0.1, 0.1)  # the reference's init of its two new layers
        nn.init.uniform_(self.code.weight, -0.1, 0.1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local, code = self.backbone(image)
        return self.regions(local).flatten(2).transpose(1, 2), self.code(code)


class DAMSM(nn.Module):
    """One DAMSM image encoder per view (the text encoder is the method's)."""

    def __init__(self, cfg: DAMSMConfig, word_dim: int, text_dim: int):
        super().__init__()
        self.frontal = ImageEncoder(cfg, word_dim, text_dim)
        self.lateral = ImageEncoder(cfg, word_dim, text_dim)


def _masked_cross_entropy(similarity: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the batch in both directions; other cases with an identical report are not negatives."""
    eye = torch.eye(len(similarity), dtype=torch.bool, device=similarity.device)
    similarity = similarity.masked_fill(same & ~eye, torch.finfo(similarity.dtype).min)
    labels = torch.arange(len(similarity), device=similarity.device)
    return F.cross_entropy(similarity, labels) + F.cross_entropy(similarity.t(), labels)


def damsm_loss(regions, code, text: Text, cfg: DAMSMConfig) -> dict[str, torch.Tensor]:
    """The DAMSM word- and sentence-level matching losses of images (regions [B, R, Dw], code [B, D])
    against their reports, each summed over both directions (image -> text, text -> image).

    Word level (the paper's eqs. 7-11): s = e^T v, normalised over the words, attention over the regions
    with gamma1, cosine relevance of each word to its region context, score_ij = log sum_t exp(gamma2 R_t)
    over the real words of text j, scaled by gamma3. Sentence level: gamma3 cosine(code_i, report_j).
    """
    with torch.autocast(regions.device.type, enabled=False):
        regions, code = regions.float(), code.float()
        words, mask = text.words.float(), text.mask
        same = identical_reports(text.flat)
        # [B_img, B_txt, T, R]: every image's regions against every report's words.
        dots = torch.einsum("jtd,ird->ijtr", words, regions)
        s = masked_softmax(dots, mask[None, :, :, None], dim=2)  # eq. 8: over the words of each report
        alpha = torch.softmax(cfg.gamma1 * s, dim=3)  # eq. 9: over the regions
        # Cosine of each word with its region context c = sum_r alpha_r v_r (eq. 10), without building c
        # ([B, B, T, D]): <c, e> = sum_r alpha_r <v_r, e> and |c|^2 = alpha^T (V V^T) alpha.
        gram = regions @ regions.transpose(1, 2)  # [B_img, R, R]
        context_norm = (torch.einsum("ijtr,irs->ijts", alpha, gram) * alpha).sum(-1).clamp(min=0).sqrt()
        relevance = (alpha * dots).sum(-1) / (context_norm * words.norm(dim=-1)[None]).clamp(min=1e-8)
        relevance = (cfg.gamma2 * relevance).masked_fill(~mask[None], -1e4)  # [B_img, B_txt, T]
        word_sim = cfg.gamma3 * torch.logsumexp(relevance, dim=2)  # [B_img, B_txt]
        sentence_sim = cfg.gamma3 * F.cosine_similarity(code[:, None], text.report.float()[None], dim=-1, eps=1e-8)
        return {"words": _masked_cross_entropy(word_sim, same), "sentence": _masked_cross_entropy(sentence_sim, same)}


def encode_text(encoder: TextEncoder, tokens: TokenBatch) -> Text:
    out = encoder(tokens)
    words, mask = compact_words(out.words, out.word_mask)
    return Text(out.report, words, mask, tokens.flat)


def damsm_batch_loss(damsm: DAMSM, text: Text, images: torch.Tensor, cfg: DAMSMConfig) -> dict[str, torch.Tensor]:
    """Both views' DAMSM losses for real or generated images [B, 2, H, W] in [-1, 1]."""
    losses = {"words": 0.0, "sentence": 0.0}
    for v, view in enumerate(VIEWS):
        for key, value in damsm_loss(*getattr(damsm, view)(images[:, v : v + 1]), text, cfg).items():
            losses[key] = losses[key] + value
    return losses


def pretrain_damsm(
    encoder: TextEncoder,
    damsm: DAMSM,
    tokens: Tokens,
    images: torch.Tensor,
    cfg: DAMSMConfig,
    *,
    seed: int,
    bf16: bool = True,
    log=None,
) -> list[float]:
    """Train the text encoder and both image encoders with the DAMSM losses (the reference's
    ``pretrain_DAMSM.py``); returns each epoch's mean loss. ``images``: uint8 [N, 2, H, W] on the device.

    Each epoch: a seeded permutation in full batches (the reference drops the last partial one), a new Adam
    at the epoch's lr (lr x lr_decay after every epoch while lr > lr0 / 10), text-encoder gradient norm
    clipped. Deterministic for a seed on the CPU. Leaves both networks in training mode.
    """
    device = images.device
    n = len(images)
    if n < 2:
        raise ValueError(f"DAMSM pretraining needs at least 2 cases, not {n}")
    all_tokens = TokenBatch.of(tokens, device)
    gen = torch.Generator().manual_seed(seed)
    encoder.train().requires_grad_(True)
    damsm.train().requires_grad_(True)
    params = list(encoder.parameters()) + list(damsm.parameters())
    lr, history = cfg.lr, []
    batch_size = min(cfg.batch_size, n)
    for epoch in range(cfg.epochs):
        opt = torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas))
        perm = torch.randperm(n, generator=gen)
        total, steps = torch.zeros((), device=device), 0
        for start in range(0, n - batch_size + 1, batch_size):
            index = perm[start : start + batch_size].to(device)
            with autocast(device, bf16):
                text = encode_text(encoder, all_tokens[index])
                losses = damsm_batch_loss(damsm, text, to_unit_range(images[index]), cfg)
                loss = losses["words"] + losses["sentence"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(encoder.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.detach()
            steps += 1
        history.append(float(total) / steps)
        if log is not None:
            log(epoch, history[-1], lr)
        if lr > cfg.lr / 10:
            lr *= cfg.lr_decay
    return history


# The method.
class AttnGAN(Method):
    paper_schedules = {"xraygan_protocol": XRAYGAN_SCHEDULE}
    """AttnGAN (Xu et al., CVPR 2018): word attention, multi-stage discriminators, the DAMSM loss."""

    name = "attngan"
    Config = Config
    variants = VARIANTS

    def __init__(self, cfg: Config, vocab: Vocab, *, image_size: int = 256, device=None, seed: int = 0):
        super().__init__(cfg, vocab, image_size=image_size, device=device, seed=seed)
        if cfg.stage_sizes[-1] != image_size:
            raise ValueError(f"attngan: the last stage size {cfg.stage_sizes[-1]} must equal image_size {image_size}")
        seed_everything(derive_seed(seed, "init"))
        self.nets = Networks(cfg, len(vocab)).to(self.device)
        self.nets.encoder.requires_grad_(False)  # frozen in the GAN; only the DAMSM pretraining trains it
        if cfg.channels_last:
            self.nets.generators.to(memory_format=torch.channels_last)
            if self.nets.ema is not None:
                self.nets.ema.to(memory_format=torch.channels_last)
        self._damsm: DAMSM | None = None

    # Training.
    @property
    def networks(self) -> nn.Module:
        return self.nets

    def fit(self, train: PairedData, val: PairedData | None, run_dir: Path, *, resume: bool = False) -> None:
        fit_staged(self, train, run_dir, resume=resume)
        if world().size > 1:  # BN running statistics last moved on each rank's own shard: take rank 0's
            for buffer in self.nets.buffers():
                dist.broadcast(buffer, src=0)

    def phases(self) -> list[Phase]:
        return [Phase("gan", "gan", self.cfg.epochs, self.cfg.batch_size)]

    def begin_stage(self, stage: str, train: PairedData, run_dir: Path) -> Stage:
        cfg, device = self.cfg, self.device
        reals = [resident_images(train.pixels, size, device) for size in cfg.stage_sizes]
        if cfg.text_training == "damsm":
            self._damsm = self._pretrained_damsm(train, reals[-1], run_dir)
        text = self._encode(train.tokens)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "discriminators"))
            discriminators = Discriminators(cfg, cfg.text.out_dim)
            weights_init(discriminators)
        discriminators.to(device)
        if cfg.channels_last:
            discriminators.to(memory_format=torch.channels_last)
        fused = device.type == "cuda"
        opt_g = torch.optim.Adam(self.nets.generators.parameters(), lr=cfg.lr_g, betas=cfg.betas, fused=fused)
        opt_d = torch.optim.Adam(discriminators.parameters(), lr=cfg.lr_d, betas=cfg.betas, fused=fused)
        if world().size > 1 and device.type == "cuda":  # BN statistics over the global batch, as on one GPU
            nn.SyncBatchNorm.convert_sync_batchnorm(self.nets.generators)
            nn.SyncBatchNorm.convert_sync_batchnorm(discriminators)
        generators_ddp = wrap_ddp(self.nets.generators, device)
        discriminators_ddp = wrap_ddp(discriminators, device)

        def step(phase: Phase, index: torch.Tensor) -> dict[str, torch.Tensor]:
            if len(index) < 2:  # batch norm cannot train on one sample
                return {}
            return self._train_step(
                generators_ddp, discriminators, discriminators_ddp, opt_g, opt_d, text.select(index), reals, index
            )

        def set_epoch(phase: Phase, epoch: int) -> None:
            decay = cfg.lr_decay ** sum(epoch >= m for m in cfg.lr_milestones)
            for opt, lr in ((opt_g, cfg.lr_g), (opt_d, cfg.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * decay

        return Stage(
            {"discriminators": discriminators}, {"generators": opt_g, "discriminators": opt_d}, step, set_epoch
        )

    def _train_step(self, generators, discriminators, discriminators_ddp, opt_g, opt_d, text, reals, index):
        cfg = self.cfg
        b = len(index)
        targets = [to_unit_range(real[index]) for real in reals]  # per stage [B, 2, s, s]
        if cfg.channels_last:
            targets = [t.contiguous(memory_format=torch.channels_last) for t in targets]
        real = [t[:, v : v + 1] for v in range(2) for t in targets]  # in Discriminators.order: view, then stage
        noise = torch.randn(b, cfg.z_dim + 2 * cfg.condition_dim, device=self.device)
        with autocast(self.device, cfg.bf16):
            fake_f, fake_l, mu, logvar = generators(text.report, text.words, text.mask, noise)
        fake = list(fake_f) + list(fake_l)
        losses = {}

        # Update the discriminators.
        with autocast(self.device, cfg.bf16):
            if cfg.loss == "bce":
                wrong_weight = (text.flat[:-1] != text.flat[1:]).any(-1).float()  # identical reports are no wrong pair
                outs = discriminators_ddp([[r, f.detach()] for r, f in zip(real, fake)], text.report, wrong=True)
                loss_d = sum(discriminator_bce(out, wrong_weight) for out in outs)
            else:
                interp = [interpolates([r], [f])[0] for r, f in zip(real, fake)]
                parts = [[r, f.detach(), i] for r, f, i in zip(real, fake, interp)]
                outs = discriminators_ddp(parts, text.report)
                loss_d = sum(
                    wgan_gp_loss(torch.cat([critic_score(out, p) for p in range(3)]), i, cfg.gp_weight)
                    for out, i in zip(outs, interp)
                )
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        losses["discriminator"] = loss_d.detach()

        # Update the generators: adversarial + KL + DAMSM (+ L2), one combined step.
        with autocast(self.device, cfg.bf16):
            discriminators.requires_grad_(False)  # the plain module: DDP must not see a frozen forward
            outs = discriminators([[f] for f in fake], text.report)
            discriminators.requires_grad_(True)
            if cfg.loss == "bce":
                adv = sum(bce(out["uncond"][0], 1.0) + sum(bce(c, 1.0) for c in out["cond"]) for out in outs)
            else:
                adv = -sum(critic_score(out, 0).mean() for out in outs)
            loss_g = adv
            losses["adv"] = adv.detach()
            if cfg.kl_weight > 0:
                kl = kl_loss(mu.float(), logvar.float()) * 2  # summed over the two views' CA
                loss_g = loss_g + cfg.kl_weight * kl
                losses["kl"] = kl.detach()
            if cfg.damsm_weight > 0:
                final = torch.cat([fake_f[-1], fake_l[-1]], dim=1)
                damsm = damsm_batch_loss(self._damsm, text, final, cfg.damsm)
                loss_g = loss_g + cfg.damsm_weight * (damsm["words"] + damsm["sentence"])
                losses["damsm_words"] = damsm["words"].detach()
                losses["damsm_sentence"] = damsm["sentence"].detach()
            if cfg.l2_weight > 0:
                l2 = sum(F.mse_loss(f.float(), r) for f, r in zip(fake, real))
                loss_g = loss_g + cfg.l2_weight * l2
                losses["l2"] = l2.detach()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        self.nets.update_ema(cfg.ema_decay)
        losses["generator"] = loss_g.detach()
        return losses

    def _pretrained_damsm(self, train: PairedData, images: torch.Tensor, run_dir: Path) -> DAMSM:
        """The frozen DAMSM: pretrained once on the train split at the final size, saved with its sha256.

        The cache holds the text encoder too (the DAMSM trains it); loading it restores both.
        """
        cfg = self.cfg
        path = run_dir / "damsm" / "damsm.pt"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "damsm", "init"))
            damsm = DAMSM(cfg.damsm, self.nets.encoder.word_dim, cfg.text.out_dim).to(self.device)
        barrier()  # every rank decides from the same files: train all, or load all
        trained = not path.is_file()
        if trained:
            log = JsonlLog(run_dir / "log.jsonl")
            pretrain_damsm(
                self.nets.encoder,
                damsm,
                train.tokens,
                images,
                cfg.damsm,
                seed=derive_seed(self.seed, "damsm"),
                bf16=cfg.bf16,
                log=lambda epoch, loss, lr: log.write(
                    stage="damsm", phase="damsm", epoch=epoch, loss=round(loss, 6), lr=lr
                ),
            )
            if world().is_main:
                state = {"damsm": damsm.state_dict(), "text_encoder": self.nets.encoder.state_dict()}
                save_checkpoint(
                    {k: {n: t.detach().cpu() for n, t in v.items()} for k, v in state.items()}, path, sidecar=True
                )
            barrier()
        if not trained or world().size > 1:
            # Also after training with several processes: GPU kernels need not be bitwise deterministic, and
            # every rank must condition on the same text features, so all take rank 0's file.
            state = load_checkpoint(path, self.device)
            damsm.load_state_dict(state["damsm"])
            self.nets.encoder.load_state_dict(state["text_encoder"])
        self.nets.encoder.eval().requires_grad_(False)
        return damsm.eval().requires_grad_(False)

    @torch.no_grad()
    def _encode(self, tokens: Tokens, chunk: int = 256) -> Text:
        """The frozen text encoder over all reports, words compacted to the longest report."""
        parts = [
            encode_text(self.nets.encoder, TokenBatch.of(tokens[s : s + chunk], self.device))
            for s in range(0, len(tokens), chunk)
        ]
        length = max(p.words.shape[1] for p in parts)
        pad = [
            (F.pad(p.words, (0, 0, 0, length - p.words.shape[1])), F.pad(p.mask, (0, length - p.mask.shape[1])))
            for p in parts
        ]
        return Text(
            torch.cat([p.report for p in parts]),
            torch.cat([w for w, _ in pad]),
            torch.cat([m for _, m in pad]),
            torch.cat([p.flat for p in parts]),
        )

    # Sampling.
    def case_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """[B, z + 2c]: z then both views' CA epsilon, drawn per case from its own seed (batch independent)."""
        dim = self.cfg.z_dim + 2 * self.cfg.condition_dim
        return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(derive_seed(s))) for s in seeds])

    @torch.no_grad()
    def generate(self, tokens: Tokens, seeds: Sequence[int], batch_size: int = 64) -> Views:
        """The final stage's images of the moving-average generators; ``seeds[i]`` fixes case i's z and eps."""
        if len(seeds) != len(tokens):
            raise ValueError(f"generate: {len(tokens)} reports but {len(seeds)} seeds")
        sampler = self.nets.sampler
        was_training = sampler.training
        sampler.eval()
        frontal, lateral = [], []
        try:
            for start in range(0, len(tokens), batch_size):
                text = self._encode(tokens[start : start + batch_size])
                noise = self.case_noise(seeds[start : start + batch_size]).to(self.device)
                with autocast(self.device, self.cfg.bf16):
                    f, lat, _, _ = sampler(text.report, text.words, text.mask, noise)
                frontal.append(f[-1].float().clamp(-1, 1).cpu())
                lateral.append(lat[-1].float().clamp(-1, 1).cpu())
        finally:
            sampler.train(was_training)
        return Views(torch.cat(frontal).contiguous(), torch.cat(lateral).contiguous())

    # Checkpoints.
    def state_dict(self) -> dict:
        return {"networks": unwrap(self.nets).state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.nets.load_state_dict(state["networks"])

    @classmethod
    def conditional_critics(cls, cfg: Config, image_size: int) -> dict[str, tuple]:
        """Each stage's conditional logit (none when ``d_condition`` is off: the D is then unconditional)."""
        if not cfg.d_condition:
            return {}
        out = {}
        for size in cfg.stage_sizes:
            d = Discriminator(size, cfg.df_dim, cfg.text.out_dim, True, cfg.d_norm).eval()
            out[f"D {size}px"] = (lambda x, c, d=d: d.cond_logits(d.trunk(x), c), size, cfg.text.out_dim)
        return out

    def parameter_counts(self) -> dict[str, int]:
        cfg, g = self.cfg, self.nets.generators.frontal
        counts = {
            "text encoder": count_parameters(self.nets.encoder),
            "G_f conditioning augmentation": count_parameters(g.ca),
            f"G_f initial stage ({cfg.stage_sizes[0]}px)": count_parameters(g.init),
        }
        for k, stage in enumerate(g.stages, start=1):
            counts[f"G_f attention stage {k} ({cfg.stage_sizes[k]}px)"] = count_parameters(stage)
        counts["G_f image heads"] = count_parameters(g.heads)
        counts["G_f total"] = count_parameters(g)
        counts["G_l (same as G_f)"] = count_parameters(self.nets.generators.lateral)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            for size in cfg.stage_sizes:
                d = Discriminator(size, cfg.df_dim, cfg.text.out_dim, cfg.d_condition, cfg.d_norm)
                counts[f"D {size}px, per view"] = count_parameters(d)
            if cfg.text_training == "damsm":
                image_encoder = ImageEncoder(cfg.damsm, self.nets.encoder.word_dim, cfg.text.out_dim)
                counts[f"DAMSM image encoder ({cfg.damsm.backbone}), per view"] = count_parameters(image_encoder)
        return counts
