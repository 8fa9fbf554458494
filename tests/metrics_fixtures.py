"""Test-only helpers for the metrics tests: a tiny deterministic feature extractor registered through
torch-fidelity's plug-in API (so the golden and pipeline tests never need large weights), and small image sets."""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from metrics import ImageSet, fidelity, weights

TINY = "xbench-test-tiny"


class TinyExtractor(FeatureExtractorBase):
    """uint8 [B, 3, H, W] -> 8x8 average pool -> a fixed random projection: '16' features and 10 logits."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        g = torch.Generator().manual_seed(1234)
        self.register_buffer("proj", torch.randn(3 * 8 * 8, 16, generator=g) / 8)
        self.register_buffer("cls", torch.randn(16, 10, generator=g))

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3, (x.dtype, x.shape)
        z = F.adaptive_avg_pool2d(x.float() / 255, 8).flatten(1) @ self.proj
        out = {"16": z, "logits_unbiased": z @ self.cls}
        return tuple(out[f] for f in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "16", "logits_unbiased"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": "16", "kid": "16", "prc": "16", "isc": "logits_unbiased"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)


if TINY not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(TINY, TinyExtractor)

TINY_WEIGHTS = weights.Resolved(
    weights.WeightsSpec("test-tiny", "none", None, "tests/metrics_fixtures.py", "a fixed random projection"),
    Path("tests/metrics_fixtures.py"),
    "0" * 64,
)


def tiny_inception_extractor() -> fidelity.Extractor:
    """Stands in for ``metrics.fidelity.inception_extractor`` (monkeypatched) in fast tests."""
    return fidelity.Extractor(TINY, {"pool": "16", "logits": "logits_unbiased"}, TINY_WEIGHTS, dict)


def phantom_sets(n_test: int = 32, n_reference: int | None = None):
    """(reference, test) ImageSets of the 64-px phantom with findings (the same cases as ``tiny_phantom``)."""
    from benchmark.data.datasets import DataConfig, get_dataset

    ds = get_dataset("phantom", DataConfig(image_size=64, max_cases=512))
    splits = ds.splits()
    reference = ImageSet.of(ds.images(splits.train[:n_reference] if n_reference else splits.train), ds.finding_labels)
    return reference, ImageSet.of(ds.images(splits.test[:n_test]), ds.finding_labels)


def random_set(n: int, size: int = 32, seed: int = 0, ids: tuple[str, ...] | None = None) -> ImageSet:
    rng = np.random.default_rng(seed)
    ids = ids or tuple(f"case{i}" for i in range(n))
    return ImageSet(ids, rng.integers(0, 256, (n, 2, size, size), dtype=np.uint8))
