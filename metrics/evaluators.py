"""What the two xbench-trained evaluators share: a content key of the reference images and a cache folder."""

import hashlib
from pathlib import Path

import numpy as np

from benchmark.core import cache


def digest(pixels: np.ndarray) -> str:
    """sha256 of an image array's bytes (with its shape): images with the same ids can still differ."""
    h = hashlib.sha256(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).data)
    return h.hexdigest()


def reference_key(kind: str, dataset: str, reference, **settings) -> str:
    """Content key of an evaluator trained on ``reference``: dataset, ids, size, pixels, settings."""
    ids = hashlib.sha256("\n".join(reference.case_ids).encode()).hexdigest()
    return cache.content_key(
        {"kind": kind, "dataset": dataset, "ids": ids, "size": reference.size, "pixels": digest(reference.pixels)}
        | settings
    )


def evaluator_path(kind: str, dataset: str, key: str) -> Path:
    return cache.cache_root() / "evaluators" / f"{kind}-{dataset}-{key}.pt"
