"""What every metric works on: ``ImageSet``s of paired views, and ``Unavailable``, a metric that cannot be computed."""

import dataclasses

import numpy as np

from benchmark.core.errors import XbenchError

VIEWS = ("frontal", "lateral")
PAIR = ("pair",)


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Paired images of some cases: ``pixels[i]`` is case ``case_ids[i]``'s [frontal, lateral]."""

    case_ids: tuple[str, ...]
    pixels: np.ndarray  # uint8 [N, 2, H, W]; [:, 0] frontal, [:, 1] lateral
    findings: tuple[frozenset[str], ...] | None = None  # per case, its finding labels (real sets; the dataset's)

    def __post_init__(self):
        px = self.pixels
        if not isinstance(px, np.ndarray):
            raise XbenchError(f"ImageSet.pixels must be a numpy array, not {type(px).__name__}")
        if px.dtype != np.uint8:
            raise XbenchError(f"images must be 8-bit (uint8), not {px.dtype}; convert them with the image pipeline")
        if px.ndim != 4 or px.shape[1] != 2:
            raise XbenchError(
                f"images must be grayscale pairs uint8 [N, 2, H, W] (frontal, lateral), not shape {px.shape}"
                + ("; RGB or multi-channel images are not accepted: convert to grayscale" if px.ndim == 5 else "")
            )
        if len(self.case_ids) != px.shape[0]:
            raise XbenchError(f"{len(self.case_ids)} case ids for {px.shape[0]} image pairs")
        if len(set(self.case_ids)) != len(self.case_ids):
            raise XbenchError("duplicate case ids in an image set")
        if self.findings is not None and len(self.findings) != len(self.case_ids):
            raise XbenchError(f"{len(self.findings)} findings lists for {len(self.case_ids)} cases")

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[-2:])

    def view(self, name: str) -> np.ndarray:
        """uint8 [N, H, W] of one view."""
        return self.pixels[:, {"frontal": 0, "lateral": 1}[name]]

    @classmethod
    def of(cls, pairs, labels=None) -> "ImageSet":
        """From a dataset's ``Pairs`` (benchmark.data.datasets); ``labels(case)`` gives a case's finding labels."""
        found = None if labels is None else tuple(frozenset(labels(c)) for c in pairs.cases)
        return cls(tuple(c.case_id for c in pairs.cases), pairs.pixels, found)


class Unavailable(Exception):
    """A metric that cannot be computed here (missing weights, too few cases, no labels): why, and the fix.

    ``evaluate`` records the message under "unavailable"; the metric is never reported as a number.
    """
