"""A chest-film feature space beside Inception, and what is measured in it: FID, KID, density and coverage, and
memorisation.

Inception was trained on photographs; its pool3 distances between two sets of chest films say more about grey
levels and texture than about anatomy. The features here are the frozen findings judge's own (``metrics.findings``:
trained by metrics/ on the dataset's real train + val films only, so they owe nothing to any judged method): the
mean-pooled last convolutional block of each view's judge, 8 x 24 = 192-d, the layer before its finding logits. A
number in this space therefore says how far generated films are from real ones in what separates findings.
The judge is a protocol per (dataset, resolution): every run of one setting is measured in one space, recorded by
the judge's sha256. On real datasets ``eval.chestfilm`` may name a published chest-film network instead
(``metrics.chestfilm_extractors``: torchxrayvision's DenseNet-121 or RAD-DINO, from user-supplied files); each
number's provenance names the network and its weights' sha256.

Density and coverage (Naeem et al. 2020, k = 5) come from the ``prdc`` package, the authors' reference code:
density, how many real k-NN balls hold each generated sample on average (1 for a set drawn like the real one, above
1 for samples crowded where real ones are dense); coverage, the share of real samples whose k-NN ball holds some
generated sample (a collapsed generator covers little).

Memorisation (``copy_rate``): each generated film's nearest training (reference) film, by Euclidean distance, in
these features and in pixels. The real test films' own nearest-training distances give the yardstick: a sample
closer to a training film than ``COPY_PERCENTILE`` % of the real test films are to theirs counts as a copy, so the
real test films score about that share by construction, and a method that returns training films scores near 1.
"""

import contextlib
import io

import numpy as np
import torch
from prdc import compute_prdc

from benchmark.core.resize import resident_images
from benchmark.data.images import to_unit_range
from metrics.base import Unavailable

DESCRIPTION = "the frozen findings judge's penultimate features (mean-pooled last separable block, 192-d per view)"
PRDC_NEIGHBOURS = 5  # Naeem et al. 2020's k
COPY_PERCENTILE = 1.0  # a sample nearer a training film than 1 % of real test films are to theirs is a copy
_CHUNK = 256  # rows of a distance matrix at once: 256 x 3,000 reference films at 256 px is 3 MB of distances


@torch.no_grad()
def features(judge: torch.nn.Module, images: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """float64 [N, 192] chest-film features of uint8 [N, H, W] films, preprocessed as the judge scores them
    (``metrics.findings.predict``: resized to the judge's size, [-1, 1])."""
    device = next(judge.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        x = resident_images(np.stack([chunk, chunk], axis=1), size, device)[:, 0:1]
        out.append(judge.tower.features(to_unit_range(x)).mean(dim=(2, 3)).double().cpu())
    return torch.cat(out).numpy()


def density_coverage(fake: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """(density, coverage) of generated features against real ones (prdc, k = ``PRDC_NEIGHBOURS``)."""
    n = min(len(fake), len(real))
    if n <= PRDC_NEIGHBOURS:
        raise Unavailable(f"density/coverage need more than {PRDC_NEIGHBOURS} cases per set, got {n}")
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes on every call
        out = compute_prdc(real_features=real, fake_features=fake, nearest_k=PRDC_NEIGHBOURS)
    return float(out["density"]), float(out["coverage"])


def nearest(queries: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance float64 [N], index [N]) of each query row's nearest ``pool`` row, Euclidean, in float64."""
    pool_t = torch.as_tensor(np.ascontiguousarray(pool), dtype=torch.float64)
    dist, index = [], []
    for start in range(0, len(queries), _CHUNK):
        q = torch.as_tensor(np.ascontiguousarray(queries[start : start + _CHUNK]), dtype=torch.float64)
        d = torch.cdist(q, pool_t)
        best = d.min(dim=1)
        dist.append(best.values)
        index.append(best.indices)
    return torch.cat(dist).numpy(), torch.cat(index).numpy()


def copy_threshold(real_distances: np.ndarray) -> float:
    """The distance below which a sample counts as a copy: the ``COPY_PERCENTILE`` th percentile of the real test
    films' own nearest-training distances."""
    return float(np.percentile(real_distances, COPY_PERCENTILE))


def pixels_of(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W] -> float64 [N, H * W] in [0, 1], the pixel space of memorisation."""
    return images.reshape(len(images), -1).astype(np.float64) / 255.0
