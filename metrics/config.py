"""The ``eval`` section of a run config: which metrics (names in the registry) and how their intervals are drawn."""

import dataclasses

from benchmark.core.errors import XbenchError, unknown_name
from benchmark.core.validation import check_ranges
from metrics.chestfilm_extractors import EXTRACTORS, JUDGE
from metrics.registry import METRICS, get_metric


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The ``eval`` section of a run config."""

    metrics: tuple[str, ...] = tuple(METRICS)  # names in metrics.METRICS
    bootstrap: int = 1000  # draws for the 95% intervals over test cases, FID's half-samples too (0 = none)
    seed: int = 0  # bootstrap draws, the mismatched real pairs, the real floor's reference cases
    device: str | None = None  # None: cuda if available else cpu
    batch_size: int = 64  # feature extraction batch
    # The network of the chest-film feature space (metrics.chestfilm_extractors): "judge" (the findings judge's
    # own features; the only one without a file), "xrv-densenet121" or "rad-dino" (user-supplied, never fetched).
    chestfilm: str = JUDGE
    # The judges (vc, finding_auc) have no settings here: they are a fixed protocol per (dataset, resolution),
    # the same for every run (metrics.judges).

    def __post_init__(self):
        check_ranges(self)
        for name in self.metrics:
            get_metric(name)
        if len(set(self.metrics)) != len(self.metrics):
            raise XbenchError(f"eval.metrics lists a metric twice: {list(self.metrics)}")
        if self.chestfilm not in EXTRACTORS:
            raise unknown_name("eval.chestfilm extractor", self.chestfilm, EXTRACTORS)
        if self.bootstrap < 0:
            raise XbenchError(f"eval.bootstrap must be >= 0 draws, not {self.bootstrap}")
