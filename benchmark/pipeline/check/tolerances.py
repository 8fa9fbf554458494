"""What each layer of ``xbench check`` lets pass, read from ``leaderboards/tolerances.toml``.

The file is written by ``scripts/measure_tolerances.py``, never by hand: for the two exact layers it holds, per
metric or loss, the largest difference measured between the recording and a re-computation on this machine's
kernel paths (default and each instruction-set cap), and the tolerance set from it (``MARGIN`` times that
spread, at least ``FLOOR``). For the end-to-end layer it holds the level of the prediction interval and the
headline metrics it compares; the interval itself comes from the recorded seeds of each row.
"""

import dataclasses
import math
import tomllib
from pathlib import Path

from scipy import stats

from benchmark.core.errors import XbenchError

TOLERANCES = Path(__file__).resolve().parents[3] / "leaderboards" / "tolerances.toml"
LAYERS = ("metrics", "steps", "end-to-end")  # in the order ``xbench check`` runs them: cheapest first
MARGIN = 10.0  # tolerance = MARGIN x the largest measured spread, so that a third CPU type has room
FLOOR = 1e-9  # below this, differences are float formatting, not kernels


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """|now - recorded| <= abs + rel * |recorded|; ``measured`` says which spread it was set from."""

    abs: float
    rel: float
    measured: str

    def allows(self, recorded: float, now: float) -> bool:
        return math.isfinite(now) and abs(now - recorded) <= self.abs + self.rel * abs(recorded)

    def describe(self) -> str:
        return f"±{self.abs:.2g}" + (f" +{self.rel:.2g}·|x|" if self.rel else "")


EXACT = Tolerance(0.0, 0.0, "counts and settings must match exactly")


@dataclasses.dataclass(frozen=True)
class EndToEnd:
    """Re-trained values pass inside the recorded seeds' prediction interval at ``level`` (family-wise over
    every end-to-end comparison of a check: Bonferroni)."""

    level: float
    metrics: dict[str, tuple[str, ...]]  # view -> headline metrics compared
    measured: str


@dataclasses.dataclass(frozen=True)
class Tolerances:
    metrics: dict[str, Tolerance]  # metric name (without _ci/_n) -> tolerance; "default" for the rest
    steps: dict[str, Tolerance]  # "<loss>@<step>" -> tolerance (abs + rel: relative to 1 + |loss|)
    end_to_end: EndToEnd

    def metric(self, name: str) -> Tolerance:
        base = name.removesuffix("_ci").removesuffix("_std")
        return self.metrics.get(name, self.metrics.get(base, self.metrics["default"]))

    def loss(self, key: str) -> Tolerance:
        """The tolerance of ``"<loss>@<step>"``."""
        return self.steps.get(key, self.steps["default"])


def load_tolerances(path: Path = TOLERANCES) -> Tolerances:
    try:
        data = tomllib.loads(path.read_text())

        def table(section: str) -> dict[str, Tolerance]:
            return {
                k: Tolerance(float(t["abs"]), float(t["rel"]), str(t["measured"])) for k, t in data[section].items()
            }

        e2e = data["end_to_end"]
        tolerances = Tolerances(
            table("metrics"),
            table("steps"),
            EndToEnd(float(e2e["level"]), {v: tuple(m) for v, m in e2e["metrics"].items()}, str(e2e["measured"])),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
        raise XbenchError(
            f"{path}: needs [metrics.*] and [steps.*] tables (abs, rel, measured) and [end_to_end] ({err}); "
            "re-create it with `python scripts/measure_tolerances.py`"
        ) from None
    if "default" not in tolerances.metrics or "default" not in tolerances.steps:
        raise XbenchError(f"{path}: needs [metrics.default] and [steps.default]")
    return tolerances


def from_spread(spread: float, relative: bool, what: str) -> Tolerance:
    """The tolerance set from a measured spread: ``MARGIN`` times it, at least ``FLOOR``."""
    value = max(FLOOR, MARGIN * spread)
    return Tolerance(0.0 if relative else value, value if relative else 0.0, what)


def prediction_interval(values: list[float], alpha: float) -> tuple[float, float]:
    """Student-t prediction interval for one new draw from the distribution the ``values`` (seeds) came from:
    mean ± t(k-1, 1-alpha/2) · s · sqrt(1 + 1/k). Needs two values or more."""
    k = len(values)
    if k < 2:
        raise ValueError("a prediction interval needs at least two seeds")
    mean = sum(values) / k
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    half = float(stats.t.ppf(1 - alpha / 2, k - 1)) * sd * math.sqrt(1 + 1 / k)
    return mean - half, mean + half
