"""``vc``: view consistency of generated frontal + lateral pairs, scored by an evaluator xbench trains itself.

The evaluator is the XRayGAN VCN architecture (``methods.vcn.VCN``: Siamese ResNet-18 with a 1-channel conv1,
random initialisation, 128-d embeddings L2-normalised x10, a weighted-L1 head giving the logit of P(same
patient)) trained with ``methods.vcn.train_vcn`` on the dataset's real train + val pairs (positives: a case's
own lateral; negatives: another case's), with its own seed, derived from the eval seed: it never shares weights,
seed or training run with a generator's VCN. One departure from the XRayGAN VCN schedule: Adam lr 1e-3 (not
0.01, which collapsed to a constant output on the phantom: AUROC 0.50 on real test pairs; 1e-3 gave 0.79).
Cached per dataset under a content key of the reference images
(ids, size, pixels) and the training settings; the file's sha256 is recorded with the scores.

Calibration rows on the real test pairs: matched (each case's own lateral: the ceiling), mismatched (a fixed
derangement of the laterals from the seed: the floor), and the evaluator's AUROC separating the two.
"""

import numpy as np
import torch

from benchmark.core.pixels import resident_images, to_unit_range
from benchmark.core.seeds import derive_seed
from methods.vcn import VCN, VCNConfig, load_vcn, save_vcn, train_vcn
from metrics.evaluators import evaluator_path, reference_key

VC_VERSION = "vc-evaluator-1"


def vc_evaluator(reference, dataset: str, cfg, size: int, device: torch.device) -> tuple[VCN, str, bool]:
    """(frozen evaluator, its checkpoint's sha256, whether it came from the cache); trained on a miss."""
    vcn_cfg = VCNConfig(epochs=cfg.vc_epochs, batch_size=cfg.vc_batch_size, lr=cfg.vc_lr)
    seed = derive_seed(cfg.seed, "xbench-vc-evaluator", dataset)
    key = reference_key(VC_VERSION, dataset, reference, vc_size=size, vcn=vars(vcn_cfg), seed=seed)
    path = evaluator_path("vc", dataset, key)
    sidecar = path.with_name(path.name + ".sha256")
    if path.is_file() and sidecar.is_file():  # else (a half-deleted entry) train again
        sha = sidecar.read_text().split()[0]
        return load_vcn(path, sha256=sha, device=device), sha, True
    vcn = train_vcn(reference.pixels, size, vcn_cfg, seed=seed, device=device)
    sha = save_vcn(vcn, path)
    return vcn, sha, False


@torch.no_grad()
def p_same(vcn: VCN, frontal: np.ndarray, lateral: np.ndarray, size: int, batch_size: int = 128) -> np.ndarray:
    """P(same patient) [N] for pairs (frontal[i], lateral[i]); uint8 [N, H, W] each."""
    device = next(vcn.parameters()).device
    out = []
    for start in range(0, len(frontal), batch_size):
        pair = np.stack([frontal[start : start + batch_size], lateral[start : start + batch_size]], axis=1)
        images = resident_images(pair, size, device)
        out.append(vcn.p_same(to_unit_range(images[:, 0:1]), to_unit_range(images[:, 1:2])).double().cpu())
    return torch.cat(out).numpy()


def derangement(n: int, seed: int) -> np.ndarray:
    """other[i] != i for all i: one n-cycle through a seeded permutation (n >= 2)."""
    perm = np.random.default_rng(seed).permutation(n)
    other = np.empty(n, dtype=np.int64)
    other[perm] = np.roll(perm, -1)
    return other
