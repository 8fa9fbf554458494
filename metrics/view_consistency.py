"""``vc``: view consistency of generated frontal + lateral pairs, scored by a judge that owes nothing to the judged.

The judge (``PairJudge``) is a two-tower network: one separable-convolution tower per view
(``metrics.judges.SeparableTower``, no weights shared between the views), each giving a 128-d embedding,
L2-normalised; the logit of P(same patient) is ``t * cos(e_frontal, e_lateral) + b`` with a learned
temperature t and bias b. It is of another family than XRayGAN's VCN (a Siamese ResNet-18 with a weighted-L1
head), is trained by xbench alone and shares no code, data order, seed or weights with any generator.

Training (``train_pair_judge``): the dataset's real train + val pairs at ``judges.judge_size`` px, augmented
(``judges.augment``, independently per view); every batch of B cases gives B matched and B(B - 1) mismatched
(frontal, lateral) pairs, each with a sigmoid loss, the two halves weighted equally so that P(same) = 0.5 is
the prior; AdamW (lr 2e-3, weight decay 1e-4), cosine schedule, ``EPOCHS`` epochs of batch ``BATCH_SIZE``.

Calibration rows on the real test pairs: matched (each case's own lateral: the ceiling), mismatched (a fixed
derangement of the laterals from the seed: the floor), and the judge's AUROC separating the two.
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core import progress
from benchmark.core.resize import resident_images
from benchmark.data.images import to_unit_range
from metrics import judges

EPOCHS = 30  # on phantom-2's 2,067 train + val pairs at 64 px: 12 epochs gave test AUROC 0.865, 30 gave 0.971
BATCH_SIZE = 64
LR = 2e-3
DESCRIPTION = "two-tower depthwise-separable convnet (xbench PairJudge), cosine-similarity logit"


class PairJudge(nn.Module):
    """(frontal, lateral) [B, 1, S, S] each, in [-1, 1] -> logits [B] of P(same patient)."""

    def __init__(self, size: int):
        super().__init__()
        self.frontal = judges.SeparableTower(size)
        self.lateral = judges.SeparableTower(size)
        self.log_t = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))
        self.bias = nn.Parameter(torch.tensor(-5.0))

    def embed(self, frontal: torch.Tensor, lateral: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.frontal(frontal), dim=1), F.normalize(self.lateral(lateral), dim=1)

    def logits(self, ef: torch.Tensor, el: torch.Tensor) -> torch.Tensor:
        """[Bf, Bl] logits of every frontal against every lateral."""
        return self.log_t.exp() * ef @ el.T + self.bias

    def forward(self, frontal: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        ef, el = self.embed(frontal, lateral)
        return self.log_t.exp() * (ef * el).sum(1) + self.bias


def balanced_pair_loss(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid loss over a [B, B] logit matrix, diagonal = matched; both halves weigh the same."""
    eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    pos = F.logsigmoid(logits[eye]).mean()
    neg = F.logsigmoid(-logits[~eye]).mean()
    return -(pos + neg) / 2


def train_pair_judge(pixels: np.ndarray, size: int, seed: int, device, epochs: int = EPOCHS) -> PairJudge:
    """Train on uint8 [N, 2, H, W] real pairs; returned frozen, in eval mode."""
    images = resident_images(pixels, size, device)
    n = len(images)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PairJudge(size).to(device, memory_format=torch.channels_last)  # faster convolutions on CPUs too
    steps = epochs * max(1, n // BATCH_SIZE)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    net.train()
    step = 0
    for _ in progress.track(range(epochs), f"VC judge, {size} px: training"):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - BATCH_SIZE + 1 if n >= BATCH_SIZE else 1, BATCH_SIZE):
            idx = perm[start : start + BATCH_SIZE].to(device)
            if idx.numel() < 2 or step >= steps:
                continue
            f = judges.augment(to_unit_range(images[idx, 0:1]), gen)
            lat = judges.augment(to_unit_range(images[idx, 1:2]), gen)
            loss = balanced_pair_loss(net.logits(*net.embed(f, lat)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    # scored in the default layout, as a judge reloaded from the cache is: the same numbers either way
    return net.to(memory_format=torch.contiguous_format).eval().requires_grad_(False)


def pair_judge(reference, dataset: str, resolution: int, device) -> tuple[PairJudge, dict]:
    """(frozen judge, provenance) for ``dataset`` at ``resolution``: from the cache, else trained on ``reference``."""
    size = judges.judge_size(resolution)
    seed = judges.judge_seed("vc", size)
    code = judges.source_hash(sys.modules[__name__])
    settings = dict(seed=seed, epochs=EPOCHS, batch=BATCH_SIZE, lr=LR)
    key = judges.cache_key("vc", dataset, size, reference.case_ids, reference.pixels, code, **settings)
    path = judges.judge_path("vc", dataset, key)
    net = PairJudge(size).to(device)
    hit = judges.load_cached(path, device)
    if hit is None:
        net = train_pair_judge(reference.pixels, size, seed, device)
        sha = judges.save({k: t.detach().cpu() for k, t in net.state_dict().items()}, path)
    else:
        net.load_state_dict(hit[0])
        net.eval().requires_grad_(False)
        sha = hit[1]
    provenance = {
        "judge": DESCRIPTION,
        "protocol": judges.PROTOCOL,
        "code": code,
        "sha256": sha,
        "size": size,
        "reference_cases": len(reference),
        "from_cache": hit is not None,
    }
    return net, provenance


@torch.no_grad()
def p_same(net: PairJudge, frontal: np.ndarray, lateral: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """P(same patient) [N] for pairs (frontal[i], lateral[i]); uint8 [N, H, W] each."""
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(frontal), batch_size):
        pair = np.stack([frontal[start : start + batch_size], lateral[start : start + batch_size]], axis=1)
        images = to_unit_range(resident_images(pair, size, device))
        out.append(torch.sigmoid(net(images[:, 0:1], images[:, 1:2])).double().cpu())
    return torch.cat(out).numpy()


def derangement(n: int, seed: int) -> np.ndarray:
    """other[i] != i for all i: one n-cycle through a seeded permutation (n >= 2)."""
    perm = np.random.default_rng(seed).permutation(n)
    other = np.empty(n, dtype=np.int64)
    other[perm] = np.roll(perm, -1)
    return other
