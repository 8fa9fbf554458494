"""``finding_auc``: does the image show what the report says?

A findings classifier per view (``FindingsJudge``: ``metrics.judges.SeparableTower`` and one logit per finding)
is trained by xbench on four fifths of the dataset's real train + val images (multi-label BCE, AdamW 2e-3,
cosine schedule, ``EPOCHS`` epochs of batch ``BATCH_SIZE``, augmented, the judges' own seed) at
``judges.judge_size`` px, then applied to the generated test images; the score is the macro AUROC against the
findings of each case's report. ``finding_auc_real`` is the same classifier on the real test images: the
ceiling a generator can reach.

Labels are whatever the caller puts in ``ImageSet.findings`` (per case a set of label names; the dataset
decides them: the phantom labels a case with the findings its renderer draws, Open-i with the MeSH major terms).

The class set, per view, is fixed from the reference alone, before any test image is seen:

1. candidates: the labels with at least ``MIN_REFERENCE_POSITIVES`` positives among the reference cases;
2. the judge is trained on the reference less a held-out fifth (the cases whose
   ``derive_seed(judges.SEED, "holdout", case id) % 5 == 0``) over all candidates;
3. a candidate is kept for a view when it has at least ``MIN_HOLDOUT_POSITIVES`` held-out positives and
   negatives and the judge's AUROC on the held-out fifth is at least ``SELECT_AUROC``: the findings the judge
   can see at this resolution (a granuloma 2 px wide at 64 px cannot be judged, and a judge that cannot see
   it says nothing about a generator). Retraining on the whole reference would double the cost (the 2-core
   budget) for a fifth more data.

At test time a kept class with no positive or no negative among the test cases has no AUROC: it is left out of
the macro mean and counted in ``finding_auc_classes_dropped`` (never silently).
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core import progress
from benchmark.core.resize import resident_images
from benchmark.core.seeds import derive_seed
from benchmark.data.images import to_unit_range
from metrics import judges
from metrics.stats import auroc

EPOCHS = 15
BATCH_SIZE = 64
LR = 2e-3
MIN_REFERENCE_POSITIVES = 20
MIN_HOLDOUT_POSITIVES = 5
SELECT_AUROC = 0.85
HOLDOUT_FOLDS = 5
VIEWS = ("frontal", "lateral")
DESCRIPTION = "depthwise-separable convnet per view (xbench FindingsJudge), multi-label"


def label_matrix(label_sets, classes: list[str]) -> np.ndarray:
    """bool [N, K]: case i has finding classes[k]."""
    return np.array([[c in s for c in classes] for s in label_sets], dtype=bool).reshape(len(label_sets), len(classes))


def candidate_classes(label_sets) -> list[str]:
    """Labels with at least MIN_REFERENCE_POSITIVES positives among the reference cases, sorted."""
    counts: dict[str, int] = {}
    for labels in label_sets:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    return sorted(c for c, n in counts.items() if n >= MIN_REFERENCE_POSITIVES)


def holdout_mask(case_ids) -> np.ndarray:
    return np.array([derive_seed(judges.SEED, "holdout", c) % HOLDOUT_FOLDS == 0 for c in case_ids], dtype=bool)


class FindingsJudge(nn.Module):
    """[B, 1, S, S] in [-1, 1] -> [B, K] finding logits."""

    def __init__(self, size: int, n_classes: int):
        super().__init__()
        self.tower = judges.SeparableTower(size, dim=n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(x)


def train_classifier(images: np.ndarray, labels: np.ndarray, size: int, seed: int, device) -> FindingsJudge:
    """Train one view's classifier on uint8 [N, H, W] images and bool [N, K] labels; returned frozen."""
    x = resident_images(np.stack([images, images], axis=1), size, device)[:, 0:1]
    y = torch.as_tensor(labels, dtype=torch.float32, device=device)
    n = len(x)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FindingsJudge(size, labels.shape[1]).to(device, memory_format=torch.channels_last)
    steps = EPOCHS * max(1, n // BATCH_SIZE)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    net.train()
    step = 0
    for _ in progress.track(range(EPOCHS), f"findings judge, {size} px: training"):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, max(1, n - BATCH_SIZE + 1), BATCH_SIZE):
            idx = perm[start : start + BATCH_SIZE].to(device)
            if idx.numel() < 2 or step >= steps:  # batch norm cannot train on one sample
                continue
            loss = F.binary_cross_entropy_with_logits(net(judges.augment(to_unit_range(x[idx]), gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    # scored in the default layout, as a judge reloaded from the cache is: the same numbers either way
    return net.to(memory_format=torch.contiguous_format).eval().requires_grad_(False)


@torch.no_grad()
def predict(net: FindingsJudge, images: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """Finding probabilities float64 [N, K] for uint8 [N, H, W] images."""
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        x = resident_images(np.stack([chunk, chunk], axis=1), size, device)[:, 0:1]
        out.append(torch.sigmoid(net(to_unit_range(x))).double().cpu())
    return torch.cat(out).numpy()


def train_and_select(reference, candidates: list[str], size: int, device) -> tuple[dict, dict]:
    """({view: judge trained without the held-out fifth}, {view: {kept classes, held-out AUROC per candidate}})."""
    labels = label_matrix(reference.findings, candidates)
    held = holdout_mask(reference.case_ids)
    nets, selection = {}, {}
    for v, view in enumerate(VIEWS):
        seed = judges.judge_seed("findings", size, view)
        nets[view] = train_classifier(reference.pixels[~held, v], labels[~held], size, seed, device)
        probs = predict(nets[view], reference.pixels[held, v], size)
        aucs = {}
        for k, c in enumerate(candidates):
            y = labels[held, k]
            enough = min(y.sum(), (~y).sum()) >= MIN_HOLDOUT_POSITIVES
            aucs[c] = auroc(probs[:, k], y) if enough else float("nan")
        selection[view] = {"classes": [c for c in candidates if aucs[c] >= SELECT_AUROC], "holdout_auroc": aucs}
    return nets, selection


def findings_judges(reference, dataset: str, resolution: int, device) -> tuple[dict, dict]:
    """({view: (classifier, candidates, kept classes)}, provenance); from the cache, else trained on ``reference``."""
    size = judges.judge_size(resolution)
    candidates = candidate_classes(reference.findings)
    code = judges.source_hash(sys.modules[__name__])
    settings = dict(
        epochs=EPOCHS,
        batch=BATCH_SIZE,
        lr=LR,
        candidates=candidates,
        select=SELECT_AUROC,
        labels=[sorted(s) for s in reference.findings],
    )
    key = judges.cache_key("findings", dataset, size, reference.case_ids, reference.pixels, code, **settings)
    path = judges.judge_path("findings", dataset, key)
    hit = judges.load_cached(path, device)
    nets = {}
    if hit is None:
        nets, selection = train_and_select(reference, candidates, size, device)
        state = {view: {k: t.detach().cpu() for k, t in net.state_dict().items()} for view, net in nets.items()}
        sha = judges.save({**state, "selection": selection}, path)
    else:
        state, sha = hit
        selection = state["selection"]
        for view in VIEWS:
            nets[view] = FindingsJudge(size, len(candidates)).to(device)
            nets[view].load_state_dict(state[view])
            nets[view].eval().requires_grad_(False)
    provenance = {
        "judge": DESCRIPTION,
        "protocol": judges.PROTOCOL,
        "code": code,
        "sha256": sha,
        "size": size,
        "reference_cases": len(reference),
        "candidates": candidates,
        "classes": {view: selection[view]["classes"] for view in VIEWS},
        "holdout_auroc": {view: selection[view]["holdout_auroc"] for view in VIEWS},
        "from_cache": hit is not None,
    }
    return {view: (nets[view], candidates, selection[view]["classes"]) for view in VIEWS}, provenance
