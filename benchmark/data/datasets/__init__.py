"""Datasets: ``DATASETS[name](DataConfig(...)).splits()`` and ``.images(cases)``.

Add a dataset by writing one module with a ``Dataset`` subclass and one line below.
"""

from benchmark.core.errors import unknown_name
from benchmark.data.datasets.base import SPLITS, Case, DataConfig, Dataset, Pairs, Splits
from benchmark.data.datasets.mimic import Mimic
from benchmark.data.datasets.openi import OpenI
from benchmark.data.datasets.phantom import Phantom

DATASETS: dict[str, type[Dataset]] = {
    "phantom": Phantom,
    "openi": OpenI,
    "mimic": Mimic,
}


def dataset_class(name: str) -> type[Dataset]:
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[name]


def get_dataset(name: str, cfg: DataConfig | None = None) -> Dataset:
    return dataset_class(name)(cfg or DataConfig())


__all__ = ["DATASETS", "SPLITS", "Case", "DataConfig", "Dataset", "Pairs", "Splits", "dataset_class", "get_dataset"]
