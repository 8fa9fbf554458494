"""A conditional denoising diffusion model for paired frontal + lateral chest X-rays (beyond the paper).

Not in XRayGAN's paper: the family that text-to-X-ray generation moved to (RoentGen, Cheff, the MONAI chest X-ray
LDM, every model on CheXGenBench's leaderboard), here under the same protocol as the GANs. Built from diffusers'
parts, no pipeline: ``UNet2DConditionModel`` denoises, ``DDPMScheduler`` adds the training noise (Ho et al. 2020),
``DDIMScheduler`` samples (Song et al. 2021, eta = 0: deterministic for a seed), ``EMAModel`` keeps the weights
that sample.

- Noise: 1,000 training steps, linear betas 1e-4 to 0.02 (Ho et al.). The network predicts v (Salimans and Ho
  2022, ``prediction = "v_prediction"``; the MONAI chest X-ray LDM does the same). Epsilon prediction
  (``--set model.prediction=epsilon``) divides its noise error by sqrt(alpha_bar), about 0.017 at the first
  DDIM step, when it estimates the image: on the toy task of tests/test_diffusion.py (120 updates) its samples
  did not follow the report at all (left-right brightness -0.13 under either report) where v's did (+0.46 /
  -0.49).
- DDIM clips its estimate of the image to [-1, 1] and recomputes the noise from the clipped estimate
  (``use_clipped_model_output``): with guidance 4 the guided estimate overshoots the range, and keeping the
  unclipped noise beside the clipped image turned the toy task's squares to the wrong side.
- Report: the shared HAE (``methods.text_encoders``), trained end to end by the denoising loss (no pretraining;
  Cheff also trains its text encoder from scratch). The UNet cross-attends to its word features: both
  sections' BiLSTM outputs, the real words moved to the front and the padding cut (an attention mask covers the
  rest), as in Imagen and Stable Diffusion, which attend to a text encoder's token sequence.
- Classifier-free guidance (Ho and Salimans 2022): the report is replaced by a learned null token on 10 % of
  training samples (``drop_report``); sampling mixes eps_uncond + w (eps_cond - eps_uncond).
- The guidance scale w is chosen by ``fit`` on the validation split, never on test: from ``guidance_grid``
  (3, 4, 5), the value whose samples of ``guidance_val_cases`` val reports are nearest the real val images in
  a pixel Frechet distance (8 x 8 average-pooled images per view, the two views' distances summed): a cheap,
  network-free stand-in for FID that a method may compute (methods/ never imports metrics/). The criterion's
  value per scale and the choice are in result.json "training". ``scripts/guidance_sweep.py`` plots FID and
  finding AUROC against w on val for a trained run.
- Two ways to get two views (``views``, the variants): ``joint``, frontal and lateral as two channels of one
  sample denoised by one UNet, so the network can share the patient between views; ``independent``, one UNet
  per view (twice the parameters and the FLOPs per pair), sharing only the report encoder and the initial noise
  (both views start from the same x_T). The leaderboard then says whether joint denoising gives view
  consistency without a VCN.
- Patches (``patch``): the UNet sees the image folded into patch x patch channels (pixel unshuffle; "simple
  diffusion", Hoogeboom et al. 2023, and DiT patch the same way), so a 64 px image is a 32 x 32 grid at the small
  setting: the 2-core CPU budget. Noise, schedulers and the loss stay in pixel space.
- Pixel space only. Latent diffusion (Rombach et al. 2022; Cheff, MONAI) needs a pretrained autoencoder, and
  none is available offline: it would need its own, which is left out (docs/reproduction.md).

Budget (result.json "budget"): pairs seen and denoiser updates as every method, plus ``training_flops`` (3 x the
denoiser's forward FLOPs per pair x pairs seen: one forward and a backward of twice its cost; the text
encoder's LSTMs are not counted, torch's FLOP counter has no rule for them) and ``sampling_flops_per_pair``
(DDIM steps x forwards per step). Sampling dominates a diffusion model's cost: the leaderboard's budget column
shows the measured generation time per pair beside them.
"""

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmark.core.distributed import wrap_ddp
from benchmark.core.resize import resident_images
from benchmark.core.seeds import derive_seed, seed_everything
from benchmark.core.validation import check_ranges
from benchmark.data.images import to_unit_range
from benchmark.data.text import Tokens, Vocab
from methods.base import MethodConfig, PairedData, TextEncoder, TokenBatch, Views, count_parameters
from methods.text_encoders import get_text_encoder
from methods.training import Phase, StagedMethod, StageState, autocast, generate_in_batches

VARIANTS = {"joint": {}, "independent": {"views": "independent"}}


@dataclasses.dataclass(frozen=True)
class Config(MethodConfig):
    # Text.
    text: TextEncoder.Config = TextEncoder.Config()  # the shared HAE; the UNet attends to its word features
    drop_report: float = 0.1  # share of training samples whose report is the null token (classifier-free guidance)
    # Denoiser: a pixel-space UNet sized for one GPU at 256 px.
    views: str = "joint"  # "joint": one UNet, the views as two channels | "independent": one UNet per view
    patch: int = 1  # the UNet sees patch x patch pixel blocks as channels (pixel unshuffle)
    channels: tuple[int, ...] = (64, 128, 128, 256, 256)  # per resolution level, the first at full size
    attention_levels: tuple[int, ...] = (3, 4)  # levels with self- and cross-attention (256 px: 32 and 16)
    layers_per_block: int = 2
    attention_heads: int = 8
    # Diffusion.
    train_steps: int = 1000  # noise levels (Ho et al.)
    beta_start: float = 1e-4  # linear betas (Ho et al.)
    beta_end: float = 0.02
    prediction: str = "v_prediction"  # what the UNet predicts: "v_prediction" | "epsilon"
    sample_steps: int = 50  # DDIM steps at sampling (eta = 0)
    guidance_grid: tuple[float, ...] = (3.0, 4.0, 5.0)  # candidate guidance scales; fit picks one on val
    guidance_val_cases: int = 128  # val reports sampled per candidate scale
    # Optimisation: the paper setting sees XRayGAN's pairs (440 epochs x the train split).
    batch_size: int = 32
    epochs: int = 440
    lr: float = 1e-4  # Adam
    ema_decay: float = 0.9999  # diffusers' EMA (its decay ramps up as (1 + n) / (10 + n) over the first updates)

    def __post_init__(self):
        check_ranges(self)
        if self.views not in ("joint", "independent"):
            raise ValueError(f"diffusion: views must be 'joint' or 'independent', not {self.views!r}")
        if self.prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"diffusion: prediction must be 'epsilon' or 'v_prediction', not {self.prediction!r}")
        if not self.guidance_grid or min(self.guidance_grid) < 1:
            raise ValueError(f"diffusion: guidance_grid needs scales >= 1, got {self.guidance_grid}")
        if not all(0 <= k < len(self.channels) for k in self.attention_levels):
            raise ValueError(f"diffusion: attention_levels {self.attention_levels} must index channels")
        if not 0 <= self.drop_report < 1:
            raise ValueError(f"diffusion: drop_report must be in [0, 1), not {self.drop_report}")
        if self.sample_steps > self.train_steps:
            raise ValueError(f"diffusion: sample_steps {self.sample_steps} > train_steps {self.train_steps}")


# Networks.
def build_unet(cfg: Config, image_size: int, channels_in: int, word_dim: int) -> UNet2DConditionModel:
    """A conditional UNet on [B, channels_in x patch^2, size / patch, size / patch], cross-attending to words."""
    levels = len(cfg.channels)
    down = tuple("CrossAttnDownBlock2D" if k in cfg.attention_levels else "DownBlock2D" for k in range(levels))
    up = tuple("CrossAttnUpBlock2D" if levels - 1 - k in cfg.attention_levels else "UpBlock2D" for k in range(levels))
    folded = channels_in * cfg.patch**2
    return UNet2DConditionModel(
        sample_size=image_size // cfg.patch,
        in_channels=folded,
        out_channels=folded,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=cfg.channels,
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=word_dim,
        attention_head_dim=cfg.attention_heads,  # diffusers' legacy name: it is the number of heads here
        norm_num_groups=math.gcd(*cfg.channels, 32),
    )


def compact_words(words: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The real words of each report moved to the front (in order) and the columns no report uses cut:
    [B, L, D] and its mask, L = the batch's longest report (at least 1)."""
    counts = mask.sum(dim=1)
    length = max(int(counts.max()), 1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :length]
    words = torch.gather(words, 1, order[:, :, None].expand(-1, -1, words.shape[-1]))
    keep = torch.arange(length, device=mask.device)[None] < counts[:, None]
    return words * keep[:, :, None], keep


class Denoiser(nn.Module):
    """Everything the optimiser trains: the report encoder, the null report token and the UNet(s)."""

    def __init__(self, cfg: Config, vocab_size: int, image_size: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = get_text_encoder("hae", cfg.text, vocab_size)
        word_dim = self.encoder.word_dim
        self.null = nn.Parameter(torch.randn(1, 1, word_dim) * 0.02)  # the dropped report: one learned token
        if cfg.views == "joint":
            self.unets = nn.ModuleList([build_unet(cfg, image_size, 2, word_dim)])
        else:
            self.unets = nn.ModuleList([build_unet(cfg, image_size, 1, word_dim) for _ in range(2)])

    def condition(self, tokens: TokenBatch, drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Word features [B, L, D] and mask [B, L]; where ``drop`` is True, the null token alone."""
        text = self.encoder(tokens)
        words, mask = compact_words(text.words, text.word_mask)
        if drop is not None:
            null_words = torch.zeros_like(words)
            null_words[:, :1] = self.null.to(words.dtype)
            null_mask = torch.zeros_like(mask)
            null_mask[:, 0] = True
            words = torch.where(drop[:, None, None], null_words, words)
            mask = torch.where(drop[:, None], null_mask, mask)
        return words, mask

    def forward(self, x, t, findings, impression, flat, drop) -> torch.Tensor:
        """Training: the prediction for noisy pairs ``x`` [B, 2, H, W] at steps ``t`` [B] under their reports
        (the null token where ``drop``), in one forward (so DDP sees the encoder and the UNets together; the
        reports as plain tensors, which DDP moves and scatters)."""
        return self.predict(x, t, *self.condition(TokenBatch(findings, impression, flat), drop))

    def predict(self, x: torch.Tensor, t: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The prediction for noisy pairs ``x`` [B, 2, H, W] at steps ``t`` [B] given encoded words: [B, 2, H, W]."""
        p = self.cfg.patch
        bias = mask.to(words.dtype)  # diffusers turns a 0/1 mask into an additive -10,000 on the padding
        groups = [x] if len(self.unets) == 1 else [x[:, :1], x[:, 1:]]
        out = [
            F.pixel_shuffle(unet(F.pixel_unshuffle(g, p), t, words, encoder_attention_mask=bias).sample, p)
            for unet, g in zip(self.unets, groups)
        ]
        return torch.cat(out, dim=1)


def noise_schedule(cfg: Config) -> dict:
    return dict(
        num_train_timesteps=cfg.train_steps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule="linear",
        prediction_type=cfg.prediction,
    )


def pooled_frechet(fake: torch.Tensor, real: torch.Tensor, grid: int = 8) -> float:
    """The guidance criterion: per view, the Frechet distance between 8 x 8 average-pooled fake and real images
    (float64), summed over the two views. [N, 2, H, W] each in [-1, 1]. tr sqrt(S1 S2) is the nuclear norm of
    X1c X2c^T / sqrt((n1 - 1)(n2 - 1)), exact whatever n is against the 64 dimensions."""
    total = 0.0
    for v in range(2):
        a, b = (F.adaptive_avg_pool2d(x[:, v : v + 1].double(), grid).flatten(1) for x in (fake, real))
        ac, bc = a - a.mean(0), b - b.mean(0)
        cross = torch.linalg.matrix_norm(ac @ bc.T, ord="nuc") / math.sqrt((len(a) - 1) * (len(b) - 1))
        trace = (ac.square().sum() / (len(a) - 1)) + (bc.square().sum() / (len(b) - 1))
        total += float((a.mean(0) - b.mean(0)).square().sum() + trace - 2 * cross)
    return total


# The method.
@dataclasses.dataclass
class DiffusionStage(StageState):
    """The optimiser, the EMA of the denoiser's weights and the train split on the device."""

    ema: EMAModel
    tokens: TokenBatch
    real: torch.Tensor  # uint8 [N, 2, size, size]

    def checkpointed(self):
        modules, optimizers = super().checkpointed()
        return {**modules, "ema": self.ema}, optimizers


class Diffusion(StagedMethod):
    Config = Config
    variants = VARIANTS
    has_critics = False  # a denoising loss, no discriminator

    def __init__(self, cfg: Config, vocab: Vocab, *, image_size: int = 256, device=None, seed: int = 0):
        super().__init__(cfg, vocab, image_size=image_size, device=device, seed=seed)
        if image_size % (cfg.patch * 2 ** (len(cfg.channels) - 1)):
            raise ValueError(
                f"diffusion: image_size {image_size} must divide by patch x 2^(levels - 1) "
                f"= {cfg.patch * 2 ** (len(cfg.channels) - 1)}"
            )
        seed_everything(derive_seed(seed, "init"))
        self.denoiser = Denoiser(cfg, len(vocab), image_size).to(self.device)
        self.sampler = copy.deepcopy(self.denoiser).requires_grad_(False).eval()  # the EMA weights after fit
        self.noise = DDPMScheduler(**noise_schedule(cfg))
        self.guidance = float(np.median(cfg.guidance_grid))  # until fit chooses on val
        self._forward_flops: int | None = None
        self._ema: EMAModel | None = None  # set by begin_stage

    # Training.
    @property
    def networks(self) -> nn.Module:
        return self.denoiser

    def phases(self) -> list[Phase]:
        return [Phase(0, "denoise", self.cfg.epochs, self.cfg.batch_size)]

    def begin_stage(self, stage, train: PairedData, run_dir: Path) -> DiffusionStage:
        cfg, device = self.cfg, self.device
        fused = device.type == "cuda"
        opt = torch.optim.Adam(self.denoiser.parameters(), lr=cfg.lr, fused=fused)
        ema = EMAModel(self.denoiser.parameters(), decay=cfg.ema_decay, foreach=True)
        ema.to(device)
        tokens = TokenBatch.of(train.tokens, device)
        real = resident_images(train.pixels, self.image_size, device)
        self._ema = ema  # fit copies it into the sampler at the end
        return DiffusionStage(stage, wrap_ddp(self.denoiser, device), opt, ema, tokens, real)

    def loss(self, denoiser: nn.Module, tokens: TokenBatch, x0: torch.Tensor) -> torch.Tensor:
        """The denoising loss of pairs ``x0`` [B, 2, H, W] in [-1, 1]: MSE to v (or the noise) at uniform steps."""
        b = len(x0)
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.cfg.train_steps, (b,), device=x0.device)
        drop = torch.rand(b, device=x0.device) < self.cfg.drop_report
        target = noise if self.cfg.prediction == "epsilon" else self.noise.get_velocity(x0, noise, t)
        with autocast(self.device, self.cfg):
            noisy = self.noise.add_noise(x0, noise, t)
            pred = denoiser(noisy, t, tokens.findings, tokens.impression, tokens.flat, drop)
        return F.mse_loss(pred.float(), target)

    def train_step(self, state: DiffusionStage, phase: Phase, index: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = self.loss(state.generators, state.tokens[index], to_unit_range(state.real[index]))
        state.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        state.opt_g.step()
        state.ema.step(self.denoiser.parameters())
        return {"denoise": loss.detach()}

    def fit(self, train: PairedData, val: PairedData | None, run_dir: Path, *, resume: bool = False) -> None:
        super().fit(train, val, run_dir, resume=resume)
        self._ema.copy_to(self.sampler.parameters())
        self.guidance = self.choose_guidance(val)

    def choose_guidance(self, val: PairedData | None) -> float:
        """The grid's scale whose val samples are nearest the real val images (``pooled_frechet``); with one
        candidate or no val split, the grid's median. Records each scale's value and time per pair."""
        grid = self.cfg.guidance_grid
        if len(grid) == 1 or val is None or len(val) < 2:
            return float(np.median(grid))
        cases = val.subset(np.arange(min(self.cfg.guidance_val_cases, len(val))))
        real = to_unit_range(torch.as_tensor(cases.pixels)).float()
        seeds = [derive_seed(self.seed, "guidance", c) for c in cases.case_ids]  # one noise for every scale
        scores, seconds = {}, {}
        for w in grid:
            start = time.perf_counter()
            views = self.sample(cases.tokens, seeds, w)
            seconds[w] = (time.perf_counter() - start) / len(cases)
            scores[w] = pooled_frechet(torch.cat([views.frontal, views.lateral], dim=1), real)
        chosen = min(grid, key=lambda w: scores[w])
        self.fit_summary["guidance"] = {
            "criterion": "pooled_frechet (8x8 pooled pixels per view, summed) on val",
            "val_cases": len(cases),
            "scores": {str(w): scores[w] for w in grid},
            "chosen": chosen,
            "sampling_s_per_pair": {str(w): seconds[w] for w in grid},
        }
        return float(chosen)

    # Sampling.
    def initial_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """x_T [B, 2, H, W] from each case's seed, drawn on the CPU (the same on any device). ``independent``:
        both views start from the same noise, the first channel's."""
        s = self.image_size
        x = torch.stack([torch.randn(2, s, s, generator=torch.Generator().manual_seed(int(k))) for k in seeds])
        if self.cfg.views == "independent":
            x = x[:, :1].expand(-1, 2, -1, -1).contiguous()
        return x.to(self.device)

    @torch.no_grad()
    def denoise(self, net: Denoiser, tokens: TokenBatch, x: torch.Tensor, guidance: float) -> torch.Tensor:
        """DDIM from x_T to x_0 under classifier-free guidance ``guidance`` (1: the conditional model alone)."""
        scheduler = DDIMScheduler(**noise_schedule(self.cfg))
        scheduler.set_timesteps(self.cfg.sample_steps, device=x.device)
        b = len(x)
        words, mask = net.condition(tokens)
        if guidance != 1:  # one batch: conditional first, the null report second
            null_words, null_mask = net.condition(tokens, torch.ones(b, dtype=torch.bool, device=x.device))
            words, mask = torch.cat([words, null_words]), torch.cat([mask, null_mask])
        for t in scheduler.timesteps:
            batch = x if guidance == 1 else torch.cat([x, x])
            pred = net.predict(batch, t.expand(len(batch)), words, mask).float()
            if guidance != 1:
                cond, uncond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            x = scheduler.step(pred, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        return x

    def sample(self, tokens: Tokens, seeds: Sequence[int], guidance: float, batch_size: int = 64) -> Views:
        def views_of(batch, batch_seeds):
            x = self.denoise(self.sampler, batch, self.initial_noise(batch_seeds), guidance)
            return x[:, :1], x[:, 1:]

        return generate_in_batches(self, tokens, seeds, batch_size, views_of)

    def generate(self, tokens: Tokens, seeds: Sequence[int]) -> Views:
        """``seeds[i]`` fixes report i's initial noise; DDIM with eta 0 is deterministic from there."""
        return self.sample(tokens, seeds, self.guidance)

    # Checkpoints: the EMA weights (what samples) and the chosen guidance.
    def state_dict(self) -> dict:
        return {"generators": self.sampler.state_dict(), "guidance": self.guidance}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["generators"])
        self.guidance = float(state["guidance"])

    # Budget.
    def forward_flops(self) -> int:
        """FLOPs of one denoiser forward on one pair (both views), with a 64-word report."""
        if self._forward_flops is None:
            s, d = self.image_size, self.denoiser.encoder.word_dim
            x = torch.zeros(1, 2, s, s, device=self.device)
            words, mask = torch.zeros(1, 64, d, device=x.device), torch.ones(1, 64, dtype=torch.bool, device=x.device)
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self.sampler.predict(x, torch.zeros(1, dtype=torch.long, device=x.device), words, mask)
            self._forward_flops = counter.get_total_flops()
        return self._forward_flops

    def budget(self, n_train: int) -> dict:
        budget = super().budget(n_train)
        per_step = 1 if self.guidance == 1 else 2
        return budget | {
            "training_flops": 3 * self.forward_flops() * budget["pairs_seen"],
            "sampling_flops_per_pair": self.cfg.sample_steps * per_step * self.forward_flops(),
            "guidance": self.guidance,
        }

    def parameter_counts(self) -> dict[str, int]:
        d = self.denoiser
        counts = {"text encoder": count_parameters(d.encoder)}
        names = ["UNet (both views)"] if len(d.unets) == 1 else ["UNet frontal", "UNet lateral"]
        counts.update({name: count_parameters(u) for name, u in zip(names, d.unets)})
        return counts
