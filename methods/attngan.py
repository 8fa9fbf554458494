"""AttnGAN: report -> frozen DAMSM text encoder -> attentional multi-stage GAN -> frontal + lateral.

Paper: Xu, Zhang, Huang, Zhang, Gan, Huang, He, "AttnGAN: Fine-Grained Text to Image Generation with
Attentional Generative Adversarial Networks" (CVPR 2018). Reference code: taoxugit/AttnGAN (MIT;
``code/model.py`` G_NET / D_NET64/128/256 / CNN_ENCODER, ``code/GlobalAttention.py``, ``code/miscc/losses.py``,
``code/trainer.py``, ``code/pretrain_DAMSM.py``, ``code/cfg/bird_attn2.yml``). Written from the notes in
the notes on the reference code; no code is copied.

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

Variant ``xraygan_protocol`` (``VARIANTS``): AttnGAN as the XRayGAN authors ran it, as
config values: the text encoder (here the HAE; theirs a flat BiLSTM) is random and frozen (no DAMSM at
all), no z, condition 128, no KL, unconditional discriminators with instance norm instead of batch norm
(a per-sample gradient penalty is wrong when batch statistics mix the samples; the other baselines refuse
WGAN-GP with batch norm alike), WGAN-GP (lambda 10) per stage + 100 x L2
per stage, Adam betas (0.9, 0.999); no moving average (their trainer is not known to keep one). Their
schedule (Adam 1e-4, lr x 0.2 at epochs 40 and 80, 150 epochs, batch 20) is ``XRAYGAN_SCHEDULE``, applied
with the variant at the paper setting (``paper_schedules``).
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from benchmark.core.checkpoints import load_checkpoint, save_checkpoint
from benchmark.core.distributed import barrier, unwrap, world, wrap_ddp
from benchmark.core.resize import resident_images
from benchmark.core.seeds import derive_seed, seed_everything
from benchmark.data.images import to_unit_range
from benchmark.data.text import Tokens, Vocab
from methods.attngan_config import VARIANTS, XRAYGAN_SCHEDULE, Config
from methods.attngan_networks import (
    Discriminator,
    Discriminators,
    Networks,
    bce,
    critic_score,
    discriminator_bce,
    weights_init,
)
from methods.base import PairedData, TokenBatch, Views, count_parameters
from methods.damsm import (
    DAMSM,
    ImageEncoder,
    Text,
    damsm_batch_loss,
    encode_text,
    pretrain_damsm,
)
from methods.layers import (
    case_noise,
    interpolates,
    kl_divergence,
    wgan_gp_loss,
)
from methods.training import JsonlLog, Phase, StagedMethod, StageState, autocast

VIEWS = ("frontal", "lateral")


# The method.
@dataclasses.dataclass
class AttnGANStage(StageState):
    """The stage's discriminators and optimisers, the train split's encoded reports and its images per size."""

    text: Text
    reals: list[torch.Tensor]  # uint8 [N, 2, s, s] per stage size


class AttnGAN(StagedMethod):
    paper_schedules = {"xraygan_protocol": XRAYGAN_SCHEDULE}
    """AttnGAN (Xu et al., CVPR 2018): word attention, multi-stage discriminators, the DAMSM loss."""

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
        super().fit(train, val, run_dir, resume=resume)
        if world().size > 1:  # BN running statistics last moved on each rank's own shard: take rank 0's
            for buffer in self.nets.buffers():
                dist.broadcast(buffer, src=0)

    def phases(self) -> list[Phase]:
        return [Phase("gan", "gan", self.cfg.epochs, self.cfg.batch_size)]

    def begin_stage(self, stage: str, train: PairedData, run_dir: Path) -> "AttnGANStage":
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
        return AttnGANStage(
            stage, generators_ddp, opt_g, text, reals,
            discriminators=discriminators, discriminators_ddp=discriminators_ddp, opt_d=opt_d,
        )  # fmt: skip

    def set_epoch(self, state: "AttnGANStage", phase: Phase, epoch: int) -> None:
        decay = self.cfg.lr_decay ** sum(epoch >= m for m in self.cfg.lr_milestones)
        state.set_lr(self.cfg.lr_g * decay, self.cfg.lr_d * decay)

    def train_step(self, state: "AttnGANStage", phase: Phase, index: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(index) < 2:  # batch norm cannot train on one sample
            return {}
        cfg = self.cfg
        generators, discriminators, discriminators_ddp = (
            state.generators,
            state.discriminators,
            state.discriminators_ddp,
        )
        opt_g, opt_d, text, reals = state.opt_g, state.opt_d, state.text.select(index), state.reals
        b = len(index)
        targets = [to_unit_range(real[index]) for real in reals]  # per stage [B, 2, s, s]
        if cfg.channels_last:
            targets = [t.contiguous(memory_format=torch.channels_last) for t in targets]
        real = [t[:, v : v + 1] for v in range(2) for t in targets]  # in Discriminators.order: view, then stage
        noise = torch.randn(b, cfg.z_dim + 2 * cfg.condition_dim, device=self.device)
        with autocast(self.device, cfg):
            fake_f, fake_l, mu, logvar = generators(text.report, text.words, text.mask, noise)
        fake = list(fake_f) + list(fake_l)
        losses = {}

        # Update the discriminators.
        with autocast(self.device, cfg):
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
        with autocast(self.device, cfg):
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
                kl = kl_divergence(mu, logvar) * 2  # summed over the two views' CA
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

    def budget(self, n_train: int) -> dict:
        """The generator's budget (``StagedMethod.budget``) plus the DAMSM's pretraining: ``damsm.epochs`` in full
        batches over the train split (the last partial batch dropped, as ``pretrain_damsm`` does)."""
        budget = super().budget(n_train)
        batch = min(self.cfg.damsm.batch_size, n_train)
        pairs = self.cfg.damsm.epochs * (n_train // batch) * batch
        budget["pretraining"] = {"damsm": {"pairs_seen": pairs, "epochs": self.cfg.damsm.epochs}}
        return budget

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
                precision=cfg,
                log=lambda epoch, loss, lr: log.write(
                    stage="damsm", phase="damsm", epoch=epoch, loss=round(loss, 6), lr=lr
                ),
            )
            if world().is_main:
                state = {"damsm": damsm.state_dict(), "text_encoder": self.nets.encoder.state_dict()}
                save_checkpoint({k: {n: t.detach().cpu() for n, t in v.items()} for k, v in state.items()}, path)
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
                noise = case_noise(
                    seeds[start : start + batch_size], self.cfg.z_dim + 2 * self.cfg.condition_dim, self.device
                )
                with autocast(self.device, self.cfg):
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
