"""View Consistency Network (VCN): is this frontal + lateral pair from the same patient?

Paper: Yang et al., "XRayGAN: Consistency-preserving Generation of X-ray Images from Radiology Reports",
section 2.3. A modified ResNet-18 ``f`` embeds each view; the probability that
the two views come from the same patient is ``sigma(sum_j w_j |f_j(x_f) - f_j(x_l)| + b)``. It is trained
offline on real pairs (true pairs = consistent, a lateral from another patient = inconsistent), re-tuned at
every progressive stage's resolution, and frozen while the generators maximise its score.

Reference code: UCSD-AI4H/XRayGAN ``models/Siamese.py`` (``Classifinet`` with ``backbone='resnet18'``,
``EmbeddingNet``) and its training at the start of every stage in ``trainer_xraygan.py``:

- embedding: torchvision ResNet-18 with conv1 replaced by a 1-channel conv7x7 s2 p3 (no bias), the fc
  dropped, then Linear(512 -> 128), L2-normalised and multiplied by 10;
- head: Linear(128 -> 1) on |f(frontal) - f(lateral)|, i.e. a learned weighted L1 distance;
- training: BCE, Adam lr 0.01 betas (0.9, 0.999), StepLR(10, 0.2), 20 epochs per stage; the same network
  is re-tuned stage after stage (lr restarts at 0.01); half the pairs get a random other case's lateral.

Departures from the reference code (each deliberate):

1. The logit is for P(SAME patient) (label 1 = same case, 0 = mismatched). The official network outputs
   P(mismatch) with label 0 = same. The generator term is therefore BCE-with-logits(logit, 1) =
   -log P(same); the official +0.1 * BCE(P(mismatch), 0) = -0.1 log(1 - P(mismatch)) pushes the same way
   (the weight lives with the caller).
2. Trained on the TRAIN split only. The official VCN trained on all reports including val and test.
3. Random initialisation. The official backbone was ImageNet-pretrained (only its new 1-channel conv1 was
   random); xbench builds ``resnet18(weights=None)`` because weights cannot be downloaded here and a
   1-channel conv1 discards the pretrained first layer anyway.
4. Frozen and in eval mode (BN running statistics) whenever it scores generated images: ``train_vcn`` and
   ``load_vcn`` return it with ``requires_grad`` False, and ``consistency_loss`` refuses a network in
   training mode or with trainable parameters.
5. Real images are down-sampled to the stage resolution with an antialiased bicubic resize (once, up
   front) instead of the official nearest-neighbour interpolation (which aliases).
6. Negatives are drawn per batch with a seeded ``torch.Generator`` (a random non-zero offset, so a case is
   never paired with its own lateral); the official sampler could draw the case itself.
7. Frontal and lateral go through the backbone as one concatenated batch (one pass; in training mode the
   BN batch statistics cover both views). In eval mode this is identical to two separate passes.
8. Checkpoints hold plain tensors only, are written atomically with a sha256 next to them, and are loaded
   with ``weights_only=True`` (the official trainer never saved its VCN).
9. Adam lr 1e-3, not the official 0.01. From random weights (departure 3) lr 0.01 collapses to a
   constant: a tiny run's stage-1 VCN gave P(same) = 0.515 for every pair (held-out AUROC 0.503), so the
   generator's view-consistency term was noise. At 1e-3 the same network, 12 epochs on phantom's 2,067 real
   train + val pairs at 64 px, separates real test pairs with AUROC 0.997. ``lr = 0.01`` is one ``--set``
   away (``model.vcn.lr=0.01``).
10. A gate: after each stage's training the VCN's AUROC on the held-out val split (matched vs mismatched
   pairs, ``evaluate_vcn``) is logged and kept; below ``min_auroc`` (default 0.75) XRayGAN stops with an
   error naming the stage and the AUROC (lower it with ``--set model.vcn.min_auroc=0`` to train anyway).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from benchmark.core import progress
from benchmark.core.checkpoints import load_checkpoint, save_checkpoint
from benchmark.core.errors import XbenchError
from benchmark.core.resize import resident_images
from benchmark.core.validation import check_ranges
from benchmark.data.images import to_unit_range
from methods.base import MethodConfig
from methods.training import autocast

EMBED_DIM = 128
EMBED_SCALE = 10.0


@dataclasses.dataclass(frozen=True)
class VCNConfig:
    """The official VCN schedule (per progressive stage), but lr 1e-3 (departure 9), and the quality gate."""

    epochs: int = 20
    batch_size: int = 96
    lr: float = 1e-3  # the official 0.01 collapses from random weights (departure 9)
    lr_step_epochs: int = 10
    lr_gamma: float = 0.2
    min_auroc: float = 0.75  # held-out val AUROC below which XRayGAN stops (departure 10); 0 = no gate
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self):
        check_ranges(self)


class VCN(nn.Module):
    """Siamese ResNet-18 with a weighted-L1 head; ``forward`` gives the logit of P(same patient).

    Randomly initialised (``resnet18(weights=None)``): the official backbone started from ImageNet weights,
    which this benchmark cannot download and whose RGB conv1 a 1-channel input replaces anyway.
    Accepts any resolution >= 32 (adaptive pooling), channels_last inputs and bf16 autocast.
    """

    def __init__(self):
        super().__init__()
        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.backbone = net
        self.proj = nn.Linear(512, EMBED_DIM)
        self.head = nn.Linear(EMBED_DIM, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] in [-1, 1] -> [B, 128] embeddings of norm 10."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"VCN expects [B, 1, H, W] images, not {tuple(x.shape)}")
        e = self.proj(self.backbone(x))
        return F.normalize(e.float(), dim=1) * EMBED_SCALE

    def forward(self, frontal: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        """Logits [B] of P(same patient)."""
        if frontal.shape == lateral.shape:
            e = self.embed(torch.cat([frontal, lateral]))
            ef, el = e.chunk(2)
        else:
            ef, el = self.embed(frontal), self.embed(lateral)
        return self.head((ef - el).abs().to(self.head.weight.dtype)).squeeze(-1).float()

    def p_same(self, frontal: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        """Probabilities [B] that the two views come from the same patient."""
        return torch.sigmoid(self(frontal, lateral))


def freeze(vcn: VCN) -> VCN:
    """Eval mode and no trainable parameters (how the VCN scores generated images)."""
    vcn.eval()
    vcn.requires_grad_(False)
    for p in vcn.parameters():
        p.grad = None
    return vcn


def consistency_loss(vcn: VCN, fake_frontal: torch.Tensor, fake_lateral: torch.Tensor) -> torch.Tensor:
    """The generator's view-consistency term: mean BCE-with-logits(logit, 1) = mean -log P(same).

    Gradients reach the images only: the VCN must be frozen (``freeze``) and in eval mode, so its BN
    statistics are not updated from generated images and none of its parameters collects a gradient.
    """
    if vcn.training or any(p.requires_grad for p in vcn.parameters()):
        raise ValueError("consistency_loss needs a frozen VCN in eval mode: call methods.vcn.freeze(vcn)")
    logits = vcn(fake_frontal, fake_lateral)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


# ----------------------------------------------------------------------------------------- data + training


def _resized(pixels: np.ndarray | torch.Tensor, size: int, device) -> torch.Tensor:
    if size < 32:
        raise ValueError(f"VCN needs images of at least 32 px, not {size}")
    return resident_images(pixels, size, device)


def _mismatched_batch(images: torch.Tensor, idx: torch.Tensor, gen: torch.Generator):
    """Frontal, lateral (half replaced by another case's) and labels (1 same, 0 mismatched) for ``idx``."""
    n = images.shape[0]
    b = idx.numel()
    swap = torch.rand(b, generator=gen) < 0.5
    offset = torch.randint(1, n, (b,), generator=gen)
    lat_idx = torch.where(swap, (idx + offset) % n, idx)
    dev = images.device
    frontal = to_unit_range(images[idx.to(dev), 0:1])
    lateral = to_unit_range(images[lat_idx.to(dev), 1:2])
    labels = (~swap).float().to(dev)
    return frontal, lateral, labels


def train_vcn(
    pixels: np.ndarray,
    size: int,
    cfg: VCNConfig = VCNConfig(),
    *,
    seed: int,
    device: str | torch.device = "cpu",
    init: VCN | None = None,
    precision: MethodConfig | None = None,
    log: Callable[[int, float, float], None] | None = None,
) -> VCN:
    """Train (or, with ``init``, re-tune) a VCN on real pairs at ``size`` px; returns it frozen, in eval mode.

    ``pixels``: uint8 [N, 2, H, W] ([:, 0] frontal, [:, 1] lateral) of the TRAIN split only.
    Each epoch: a seeded permutation; per batch half the pairs (at random) get another case's lateral
    (label 0), the rest stay true pairs (label 1); BCE-with-logits, Adam, StepLR. ``log(epoch, loss,
    accuracy)`` gets the epoch's mean training loss and accuracy. ``precision``: the method's config, whose
    bf16 autocast the forward passes follow (``methods.training.autocast``). Deterministic for a seed on the CPU.
    """
    device = torch.device(device)
    images = _resized(pixels, size, device)
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"VCN training needs at least 2 cases, not {n}")
    gen = torch.Generator().manual_seed(seed)
    if init is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vcn = VCN()
    else:
        vcn = init
    vcn = vcn.to(device).train().requires_grad_(True)
    opt = torch.optim.Adam(vcn.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
    for epoch in progress.track(range(cfg.epochs), f"VCN, {size} px: training"):
        perm = torch.randperm(n, generator=gen)
        total_loss = torch.zeros((), device=device)
        total_correct = torch.zeros((), device=device)
        seen = 0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            if idx.numel() < 2:  # BN cannot train on a single sample
                continue
            frontal, lateral, labels = _mismatched_batch(images, idx, gen)
            with autocast(device, precision):
                logits = vcn(frontal, lateral).float()
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.detach() * idx.numel()
            total_correct += ((logits.detach() > 0).float() == labels).sum()
            seen += idx.numel()
        sched.step()
        if log is not None and seen:
            log(epoch, float(total_loss) / seen, float(total_correct) / seen)
    return freeze(vcn)


@torch.no_grad()
def evaluate_vcn(vcn: VCN, pixels: np.ndarray, size: int, *, seed: int, batch_size: int = 64) -> dict:
    """Mean P(same) on true pairs and on pairs with another case's lateral (a fixed derangement from the
    seed), the accuracy (threshold 0.5) over both sets and the AUROC of matched against mismatched pairs.
    ``pixels``: uint8 [N, 2, H, W], N >= 2."""
    device = next(vcn.parameters()).device
    images = _resized(pixels, size, device)
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"VCN evaluation needs at least 2 cases, not {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    other = torch.empty(n, dtype=torch.long)
    other[perm] = perm.roll(-1)  # one n-cycle: nobody keeps its own lateral
    was_training = vcn.training
    vcn.eval()
    matched, mismatched = [], []
    try:
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            frontal = to_unit_range(images[idx.to(device), 0:1])
            matched.append(vcn.p_same(frontal, to_unit_range(images[idx.to(device), 1:2])).cpu())
            mismatched.append(vcn.p_same(frontal, to_unit_range(images[other[idx].to(device), 1:2])).cpu())
    finally:
        vcn.train(was_training)
    pm, pn = torch.cat(matched), torch.cat(mismatched)
    accuracy = ((pm > 0.5).sum() + (pn <= 0.5).sum()).item() / (2 * n)
    return {
        "p_same_matched": pm.mean().item(),
        "p_same_mismatched": pn.mean().item(),
        "accuracy": accuracy,
        "auroc": auroc(pm, pn),
        "n": n,
    }


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney U statistic / (n_p n_n))."""
    p, q = positive.double().flatten()[:, None], negative.double().flatten()[None, :]
    return ((p > q).double().mean() + 0.5 * (p == q).double().mean()).item()


# ---------------------------------------------------------------------------------------------- checkpoints


def save_vcn(vcn: VCN, path: str | os.PathLike) -> str:
    """Write the state dict (plain CPU tensors) atomically, plus ``<path>.sha256``; return the sha256."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in vcn.state_dict().items()}
    return save_checkpoint(state, Path(path))


def load_vcn(path: str | os.PathLike, *, sha256: str | None = None, device: str | torch.device = "cpu") -> VCN:
    """Load a ``save_vcn`` file (sha256 and weights-only checks in ``load_checkpoint``); frozen, in eval mode."""
    path = Path(path)
    state = load_checkpoint(path, sha256=sha256)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise XbenchError(f"VCN checkpoint {path} is not a state dict of tensors")
    vcn = VCN()
    expected_keys = set(vcn.state_dict())
    missing, unexpected = sorted(expected_keys - set(state)), sorted(set(state) - expected_keys)
    if missing or unexpected:
        raise XbenchError(
            f"VCN checkpoint {path} does not fit the VCN: missing {missing[:3]}"
            f"{' ...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
            f"{' ...' if len(unexpected) > 3 else ''}"
        )
    try:
        vcn.load_state_dict(state)
    except RuntimeError as e:
        raise XbenchError(f"VCN checkpoint {path} does not fit the VCN: {' '.join(str(e).split())}") from None
    return freeze(vcn.to(device))
