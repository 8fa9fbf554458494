"""``finding_auc``: does the image show what the report says?

A findings classifier per view (``FindingsNet``: four stride-2 conv-BN-ReLU blocks of width w, 2w, 4w, 8w, global
average pooling, one logit per finding) is trained by xbench on the real train + val images of the dataset
(multi-label BCE, Adam 1e-3, batch 64, own seed) at ``finding_size`` px, then applied to the generated test
images; the score is the macro AUROC, against the findings of each case's report, over the findings with at
least ``MIN_REFERENCE_POSITIVES`` positives in the reference and ``MIN_TEST_POSITIVES`` in the test set.
``finding_auc_real`` is the same classifier on the real test images: the ceiling a generator can reach.

Labels: phantom: the findings the renderer draws (``benchmark.phantom`` handler names, e.g. ``effusion``,
``cardiomegaly``: exactly what is in the image); openi: the MeSH major terms (lower case) of the abnormal
findings; mimic: its reports carry no MeSH tags and xbench has no rule-based labeller yet, so unavailable.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.checkpoints import load_checkpoint, save_checkpoint
from benchmark.core.pixels import resident_images, to_unit_range
from benchmark.core.seeds import derive_seed
from benchmark.phantom.findings import handler_name
from benchmark.reports import Finding
from metrics.evaluators import evaluator_path, reference_key

FINDINGS_VERSION = "findings-classifier-1"
MIN_REFERENCE_POSITIVES = 10
MIN_TEST_POSITIVES = 5
LR = 1e-3
BATCH_SIZE = 64


def finding_labels(dataset: str, findings: tuple[Finding, ...]) -> frozenset[str]:
    """The label names of one case's findings (see the module docstring)."""
    if dataset == "phantom":
        return frozenset(name for f in findings if (name := handler_name(f)) is not None)
    return frozenset(f.term.strip().lower() for f in findings if not f.is_normal)


def label_matrix(dataset: str, findings, classes: list[str]) -> np.ndarray:
    """bool [N, K]: case i has finding classes[k]."""
    sets = [finding_labels(dataset, f) for f in findings]
    return np.array([[c in s for c in classes] for s in sets], dtype=bool).reshape(len(sets), len(classes))


def reference_classes(dataset: str, findings) -> list[str]:
    """Findings with at least MIN_REFERENCE_POSITIVES positives among the reference cases, sorted."""
    counts: dict[str, int] = {}
    for f in findings:
        for label in finding_labels(dataset, f):
            counts[label] = counts.get(label, 0) + 1
    return sorted(c for c, n in counts.items() if n >= MIN_REFERENCE_POSITIVES)


class FindingsNet(nn.Module):
    """[B, 1, H, W] in [-1, 1] -> [B, K] finding logits."""

    def __init__(self, n_classes: int, width: int = 32):
        super().__init__()
        layers, c_in = [], 1
        for i in range(4):
            c = width * 2**i
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def train_classifier(
    images: np.ndarray, labels: np.ndarray, size: int, width: int, epochs: int, seed: int, device
) -> FindingsNet:
    """Train one view's classifier on uint8 [N, H, W] images and bool [N, K] labels; returned in eval mode."""
    x = resident_images(np.stack([images, images], axis=1), size, device)[:, 0:1]
    y = torch.as_tensor(labels, dtype=torch.float32, device=device)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FindingsNet(labels.shape[1], width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=1e-4)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH_SIZE):
            idx = perm[start : start + BATCH_SIZE].to(device)
            if idx.numel() < 2:  # BN cannot train on one sample
                continue
            loss = F.binary_cross_entropy_with_logits(net(to_unit_range(x[idx])), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def predict(net: FindingsNet, images: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """Finding probabilities float64 [N, K] for uint8 [N, H, W] images."""
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        x = resident_images(np.stack([chunk, chunk], axis=1), size, device)[:, 0:1]
        out.append(torch.sigmoid(net(to_unit_range(x))).double().cpu())
    return torch.cat(out).numpy()


def findings_classifiers(reference, dataset: str, cfg, device) -> tuple[dict[str, FindingsNet], list[str], str, bool]:
    """({view: classifier}, classes, checkpoint sha256, from cache); trained on the reference on a miss."""
    classes = reference_classes(dataset, reference.findings)
    settings = dict(size=cfg.finding_size, width=cfg.finding_width, epochs=cfg.finding_epochs, classes=classes)
    seed = derive_seed(cfg.seed, "xbench-findings-classifier", dataset)
    key = reference_key(FINDINGS_VERSION, dataset, reference, seed=seed, lr=LR, batch=BATCH_SIZE, **settings)
    path = evaluator_path("findings", dataset, key)
    nets: dict[str, FindingsNet] = {}
    sidecar = path.with_name(path.name + ".sha256")
    if path.is_file() and sidecar.is_file():  # else (a half-deleted entry) train again
        state = load_checkpoint(path, device)  # sha256 checked against the sidecar
        for view in ("frontal", "lateral"):
            nets[view] = FindingsNet(len(classes), cfg.finding_width).to(device)
            nets[view].load_state_dict(state[view])
            nets[view].eval().requires_grad_(False)
        return nets, classes, sidecar.read_text().split()[0], True
    labels = label_matrix(dataset, reference.findings, classes)
    for v, view in enumerate(("frontal", "lateral")):
        nets[view] = train_classifier(
            reference.pixels[:, v],
            labels,
            cfg.finding_size,
            cfg.finding_width,
            cfg.finding_epochs,
            derive_seed(seed, view),
            device,
        )
    state = {view: {k: t.detach().cpu() for k, t in net.state_dict().items()} for view, net in nets.items()}
    sha = save_checkpoint({**state, "classes": classes}, path, sidecar=True)
    return nets, classes, sha, False
