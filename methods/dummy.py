"""The floor of every leaderboard: the mean training image per view, whatever the report says.

Any method that learns nothing from the text scores about this; the pipeline tests use it because it
fits in milliseconds.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmark.data.images import to_unit_range
from benchmark.data.text import Tokens
from methods.base import Method, MethodConfig, PairedData, Views


@dataclasses.dataclass(frozen=True)
class Config(MethodConfig):
    """Nothing to set: the mean image has no hyperparameters (the shared run settings are unused)."""


class Dummy(Method):
    Config = Config
    trains = False
    has_critics = False

    def __init__(self, cfg: Config, vocab, *, image_size: int = 256, device=None, seed: int = 0):
        super().__init__(cfg, vocab, image_size=image_size, device=device, seed=seed)
        self.mean = torch.zeros(2, image_size, image_size)

    def fit(self, train: PairedData, val: PairedData | None, run_dir: Path, *, resume: bool = False) -> None:
        if train.image_size != self.image_size:
            raise ValueError(
                f"dummy: train images are {train.image_size}px, the method was built for {self.image_size}"
            )
        self.mean = to_unit_range(train.pixels).mean(dim=0)  # [2, H, W], float64-free: float32 sums
        self.pairs_seen = len(train)

    def budget(self, n_train: int) -> dict:
        """One pass over the train split to average it; nothing is updated."""
        return {"epochs": 1, "pairs_seen": n_train, "generator_updates": 0, "n_train": n_train}

    def generate(self, tokens: Tokens, seeds: Sequence[int]) -> Views:
        n = len(tokens)
        return Views(self.mean[0].expand(n, 1, -1, -1).clone(), self.mean[1].expand(n, 1, -1, -1).clone())

    def state_dict(self) -> dict:
        return {"mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"]
