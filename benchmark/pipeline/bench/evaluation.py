"""Evaluation time: generating a test split with a method, then every metric, as a first run pays for it.

The caches start empty (a fresh ``XBENCH_CACHE_DIR``), so the view-consistency evaluator and the findings
classifier are trained and the real-image features extracted inside the timed region, as on a user's first
run. Reports are the phantom dataset's real ones (the text encoder and the findings labels see real lengths
and label counts), but the pixels are random and the method untrained: the time does not depend on content.
"paper" is the Open-i protocol's size (518 test, 2,067 train + val cases, 256 px, ``EvalConfig()``).
"""

import dataclasses
import itertools
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from benchmark.core.seeds import derive_seed
from benchmark.data.datasets import Case, get_dataset
from benchmark.data.images import to_uint8
from benchmark.data.text import Vocab
from benchmark.pipeline.config import load_config
from methods import get_method
from methods.base import default_device
from metrics import ImageSet, evaluate, weights
from metrics.evaluate import clock

SETTINGS = {  # setting -> (n_test, n_reference, image size); the configs come from configs/<setting>/
    "paper": (518, 2067, 256),
    "small": (518, 2067, 64),
    "tiny": (64, 2067, 64),  # the judges learn from the full train + val at any setting
}


def time_evaluation(
    setting: str = "tiny",
    *,
    method: str = "xraygan",
    n_test: int | None = None,
    n_reference: int | None = None,
    device: str | None = None,
    seed: int = 0,
) -> dict:
    """Seconds to generate ``n_test`` pairs with an untrained ``method`` and to compute every metric on them."""

    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose one of: {', '.join(SETTINGS)}")
    default_test, default_reference, size = SETTINGS[setting]
    resolved = load_config(method, "phantom", setting=setting)
    dev = torch.device(device) if device is not None else default_device()
    # The evaluators and features follow the method's device, not whatever EvalConfig would pick.
    eval_cfg = dataclasses.replace(resolved.eval, device=str(dev))

    with fresh_cache():
        dataset = get_dataset("phantom")
        splits = dataset.splits()
        test = take(splits.test, n_test or default_test)
        reference = take(splits.train + splits.val, n_reference or default_reference)
        vocab = Vocab.build((c.report.findings, c.report.impression) for c in splits.train)
        cls = get_method(method)
        model = cls(resolved.model, vocab, image_size=size, device=dev, seed=seed)
        rng = np.random.default_rng(seed)
        ids = tuple(c.case_id for c in test)
        real = ImageSet(ids, random_pairs(rng, len(test), size), tuple(map(dataset.finding_labels, test)))
        ref = ImageSet(
            tuple(c.case_id for c in reference),
            random_pairs(rng, len(reference), size),
            tuple(map(dataset.finding_labels, reference)),
        )
        tokens = vocab.encode([(c.report.findings, c.report.impression) for c in test])
        seeds = [derive_seed(seed, c.case_id) for c in test]

        start = clock(dev)
        views = model.generate(tokens, seeds)
        fake = np.stack([to_uint8(views.frontal[:, 0].numpy()), to_uint8(views.lateral[:, 0].numpy())], axis=1)
        generate_s = clock(dev) - start

        timings: dict[str, float] = {}
        start = clock(dev)
        out = evaluate(ImageSet(ids, fake), real, eval_cfg, dataset="bench", reference=ref, timings=timings)
        evaluate_s = clock(dev) - start

    return {
        "setting": setting,
        "method": method,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "n_test": len(test),
        "n_reference": len(reference),
        "image_size": size,
        "generate_s": generate_s,
        "evaluate_s": evaluate_s,
        "total_s": generate_s + evaluate_s,
        "metrics": timings,
        "unavailable": dict(out["unavailable"]),
    }


def take(cases: Sequence[Case], n: int) -> list[Case]:
    """The first ``n`` cases, cycling with suffixed ids when there are fewer (ids stay unique)."""
    if not cases:
        raise ValueError("no cases to take from")
    out = []
    for i, case in zip(range(n), itertools.cycle(cases)):
        lap = i // len(cases)
        out.append(case if lap == 0 else dataclasses.replace(case, case_id=f"{case.case_id}~{lap}"))
    return out


def random_pairs(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 2, size, size), dtype=np.uint8)


@contextmanager
def fresh_cache() -> Iterator[None]:
    """An empty ``XBENCH_CACHE_DIR`` for the duration; the user's cache and environment are left as found."""
    saved = {name: os.environ.get(name) for name in ("XBENCH_CACHE_DIR", "XBENCH_WEIGHTS_DIR")}
    # Weights live under the cache by default: keep finding the user's, or metrics would turn unavailable.
    weights_dir = str(weights.weights_dir())
    with tempfile.TemporaryDirectory(prefix="xbench-bench-") as tmp:
        try:
            os.environ["XBENCH_CACHE_DIR"] = tmp
            os.environ["XBENCH_WEIGHTS_DIR"] = weights_dir
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
