"""What xbench has, for ``xbench ls``: methods with their variants (and parameter counts), metrics."""

import dataclasses
import sys

from benchmark.data.datasets import get_dataset
from benchmark.data.text import Vocab
from methods import METHODS


@dataclasses.dataclass(frozen=True)
class MethodEntry:
    name: str
    variants: tuple[str, ...]
    summary: str  # the first line of the method's docstring
    parameters: dict[str, int] | None  # trainable parameters per network at the paper setting, when asked


def method_catalog(*, parameters: bool = False) -> tuple[list[MethodEntry], int | None]:
    """Every registered method; with ``parameters``, counts at the paper setting, the text encoders' embeddings
    sized by the Open-i train split's vocabulary (whose size is returned beside the entries)."""
    vocab = None
    if parameters:
        train = get_dataset("phantom").splits().train
        vocab = Vocab.build((c.report.findings, c.report.impression) for c in train)
    entries = []
    for name, cls in METHODS.items():
        summary = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        counts = cls(cls.Config(), vocab, image_size=256, device="cpu").parameter_counts() if parameters else None
        entries.append(MethodEntry(name, tuple(cls.variants), summary, counts))
    return entries, (len(vocab) if vocab is not None else None)
