"""A floor for memorisation: return the training pair whose report is nearest.

Not a generator: every "sample" is a real training film, the one a lookup by report text would pick. It is the
calibration the memorisation metric (``copy_rate``, metrics/chestfilm.py) must fire on: a method that copies its
training set scores near 1 there, whatever its other metrics say. It also shows what report-matched real films
score on the other columns (findings fidelity of a retrieval baseline, view consistency of real pairs).

Nearest report: cosine similarity of TF-IDF vectors over the report's words (FINDINGS and IMPRESSION, the flat
tokens; padding and the section separator left out), idf from the train split; ties go to the lowest train index,
so the choice is deterministic and the seed plays no part.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmark.data.images import to_unit_range
from benchmark.data.text import Tokens
from methods.base import Method, MethodConfig, PairedData, Views

_SPECIAL = 3  # ids 0-2: PAD, UNK, SEP (benchmark.data.text.Vocab); UNK stays a word, the others are not counted


@dataclasses.dataclass(frozen=True)
class Config(MethodConfig):
    """Nothing to set: the lookup has no hyperparameters (the shared run settings are unused)."""


def word_counts(flat: np.ndarray, vocab_size: int) -> np.ndarray:
    """float64 [N, V]: each report's word counts (padding and the separator not counted)."""
    counts = np.zeros((len(flat), vocab_size))
    rows = np.repeat(np.arange(len(flat)), flat.shape[1])
    np.add.at(counts, (rows, flat.reshape(-1)), 1.0)
    counts[:, 0] = 0.0
    counts[:, 2] = 0.0
    return counts


class Copier(Method):
    Config = Config
    trains = False
    has_critics = False

    def __init__(self, cfg: Config, vocab, *, image_size: int = 256, device=None, seed: int = 0):
        super().__init__(cfg, vocab, image_size=image_size, device=device, seed=seed)
        self.idf = torch.zeros(len(vocab))
        self.train_vectors = torch.zeros(0, len(vocab))
        self.train_pixels = torch.zeros(0, 2, image_size, image_size, dtype=torch.uint8)

    def _vectors(self, flat: np.ndarray) -> torch.Tensor:
        tfidf = torch.as_tensor(word_counts(flat, len(self.vocab))) * self.idf
        return tfidf / tfidf.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def fit(self, train: PairedData, val: PairedData | None, run_dir: Path, *, resume: bool = False) -> None:
        if train.image_size != self.image_size:
            raise ValueError(
                f"copier: train images are {train.image_size}px, the method was built for {self.image_size}"
            )
        df = (word_counts(train.tokens.flat, len(self.vocab)) > 0).sum(axis=0)
        self.idf = torch.as_tensor(np.log((1 + len(train)) / (1 + df)) + 1.0)
        self.train_vectors = self._vectors(train.tokens.flat)
        self.train_pixels = torch.as_tensor(train.pixels)
        self.pairs_seen = len(train)

    def budget(self, n_train: int) -> dict:
        """One pass over the train split to index it; nothing is updated."""
        return {"epochs": 1, "pairs_seen": n_train, "generator_updates": 0, "n_train": n_train}

    def nearest(self, tokens: Tokens) -> np.ndarray:
        """The train index of each report's nearest train report (lowest index on ties)."""
        similarity = self._vectors(tokens.flat) @ self.train_vectors.T  # [N, N_train]
        return similarity.argmax(dim=1).numpy()  # argmax returns the first maximum

    def generate(self, tokens: Tokens, seeds: Sequence[int]) -> Views:
        pairs = to_unit_range(self.train_pixels[self.nearest(tokens)])
        return Views(pairs[:, 0:1].contiguous(), pairs[:, 1:2].contiguous())

    def state_dict(self) -> dict:
        return {"idf": self.idf, "train_vectors": self.train_vectors, "train_pixels": self.train_pixels}

    def load_state_dict(self, state: dict) -> None:
        self.idf, self.train_vectors, self.train_pixels = state["idf"], state["train_vectors"], state["train_pixels"]
