"""The learned judges' fixed protocol: what ``vc`` and ``finding_auc`` are scored by, and how they are cached.

A judge is a protocol per (dataset, resolution), not a by-product of a run: it is trained on the dataset's full
train + val reference (the caller passes it whatever the run's caps), with a seed of its own, so every run at one
resolution is scored by one judge. Both judges share one backbone family, chosen to owe nothing to the judged:
a plain stack of depthwise-separable convolutions (MobileNet-style: depthwise 3x3 + pointwise 1x1, batch norm,
GELU, no residual connections), unlike every generator's VCN (a ResNet-18) and every generator.

Input: the evaluation images resized to ``judge_size(resolution)`` px (the resolution itself, capped at 128 so a
256 px run trains its judges in minutes, not hours); a strided stem brings every size to a 32 px grid first
(the CPU budget: a few minutes per judge on 2 cores at 64 px). Augmentation during training only: a random
affine (shift up to 1/16 of the side, scale +-5 %, rotation +-3 degrees) and a random gain and offset of the
grey levels, drawn per image, never a flip (the heart and the aortic knob are on one side).

Cache key: ``PROTOCOL``, a sha256 of this module's and the judge's own source (an edit to either makes new
judges; the old files are never read again), the dataset, the size, the reference's ids and pixels and the
seed. The checkpoint's sha256 is recorded with every score.

Frozen judges: ``leaderboards/judges/`` holds committed judge files under the same names (with their sha256
beside them), made by ``xbench judges freeze``; a judge whose key matches one is loaded from there instead of
being trained, so the tiny main job and CI do not pay for training. A file whose bytes no longer match its
sha256 is an error, never used. Any change of the key (code, protocol, reference) simply finds no file.
"""

import hashlib
import inspect
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core import cache
from benchmark.core.checkpoints import load_checkpoint, save_checkpoint
from benchmark.core.seeds import derive_seed

PROTOCOL = "xbench-judges-3"  # bump with any change of what a judge is or how it is trained
SEED = 20260101  # the judges' own seed: no run's, no generator's
MAX_SIZE = 128
FROZEN = Path(__file__).resolve().parents[1] / "leaderboards" / "judges"  # committed judges (sha-pinned)


def digest(pixels: np.ndarray) -> str:
    """sha256 of an image array's bytes (with its shape): images with the same ids can still differ."""
    h = hashlib.sha256(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).data)
    return h.hexdigest()


def judge_size(resolution: int) -> int:
    """The px a judge sees for images of ``resolution`` px (see the module docstring)."""
    return min(resolution, MAX_SIZE)


def source_hash(*modules) -> str:
    """sha256 of the source of this module and ``modules``: part of every judge's cache key."""
    h = hashlib.sha256()
    for module in (inspect.getmodule(source_hash), *modules):
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()[:16]


def judge_seed(kind: str, size: int, *parts) -> int:
    return derive_seed(SEED, kind, size, *parts)


# -------------------------------------------------------------------------------------------- the backbone


def _separable(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.GELU(),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
    ]


class SeparableTower(nn.Module):
    """[B, 1, S, S] in [-1, 1] -> [B, dim]: a strided stem to a 32 px grid, separable blocks to 4 px, mean pool."""

    def __init__(self, size: int, width: int = 24, dim: int = 128):
        super().__init__()
        f = max(1, size // 64)  # a 64 px image: 4x4 stem of stride 2; 128 px: 8x8 of stride 4
        layers = [nn.Conv2d(1, width, 4 * f, stride=2 * f, padding=f, bias=False), nn.BatchNorm2d(width), nn.GELU()]
        c = width
        for stride, c_out in ((2, 2 * width), (1, 2 * width), (2, 4 * width), (1, 4 * width), (2, 8 * width)):
            layers += _separable(c, c_out, stride)  # 32 -> 16 -> 16 -> 8 -> 8 -> 4 px
            c = c_out
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x).mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------------ augmentation


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine and grey-level jitter per image of [B, 1, S, S] in [-1, 1] (training only)."""
    b = x.shape[0]

    def uniform(lo, hi):
        return (torch.rand(b, generator=gen) * (hi - lo) + lo).to(x.device)

    angle = uniform(-3, 3) * math.pi / 180
    scale = uniform(0.95, 1.05)
    shift = torch.stack([uniform(-1 / 8, 1 / 8), uniform(-1 / 8, 1 / 8)], 1)  # 1/16 of the side in [-1, 1] units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1  # black outside
    gain, offset = uniform(0.9, 1.1), uniform(-0.1, 0.1)
    x = (x * gain.view(b, 1, 1, 1) + offset.view(b, 1, 1, 1)).clamp(-1, 1)
    return x.contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------- caching


def cache_key(kind: str, dataset: str, size: int, reference_ids, pixels: np.ndarray, code: str, **settings) -> str:
    ids = hashlib.sha256("\n".join(reference_ids).encode()).hexdigest()
    parts = {"protocol": PROTOCOL, "kind": kind, "code": code, "dataset": dataset, "size": size, "ids": ids}
    return cache.content_key(parts | {"pixels": digest(pixels)} | settings)


def judge_path(kind: str, dataset: str, key: str) -> Path:
    return cache.cache_root() / "judges" / f"{kind}-{dataset}-{key}.pt"


def load_cached(path: Path, device) -> tuple[dict, str] | None:
    """(state, sha256) of a cached or frozen judge, or None (absent or half-deleted: train again)."""
    for found in (path, FROZEN / path.name):
        sidecar = found.with_name(found.name + ".sha256")
        if found.is_file() and sidecar.is_file():
            return load_checkpoint(found, device), sidecar.read_text().split()[0]
    return None


def save(state: dict, path: Path) -> str:
    return save_checkpoint(state, path)
