"""One evaluation's shared state: its inputs, the resampling plans, and what several metrics share (features,
judges), each computed once. ``metrics.compute`` reads it; ``metrics.evaluate`` makes one per call."""

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from benchmark.core import cache
from benchmark.core.errors import XbenchError
from benchmark.core.seeds import derive_seed
from metrics import chestfilm, chestfilm_extractors, fidelity, findings, judges
from metrics.base import ImageSet, Unavailable
from metrics.stats import bootstrap_indices, half_sample_indices, mean_interval, percentile_interval, resampled

if TYPE_CHECKING:
    from metrics.config import EvalConfig

FEATURES_VERSION = "features-1"  # bump when feature extraction changes: real-image features are cached by it
CHESTFILM = "chestfilm"  # the feature family of metrics.chestfilm (its network: eval.chestfilm)


def check_inputs(fake: ImageSet, real: ImageSet, reference: ImageSet | None) -> None:
    """Clear errors for sets that cannot be compared (never a silent number)."""
    for name, s in (("generated", fake), ("real", real), ("reference", reference)):
        if s is not None and not isinstance(s, ImageSet):
            raise XbenchError(f"the {name} images must be a metrics.ImageSet, not {type(s).__name__}")
    if len(fake) == 0 or len(real) == 0:
        raise XbenchError(f"nothing to evaluate: {len(fake)} generated and {len(real)} real cases")
    if fake.case_ids != real.case_ids:
        missing = [c for c in real.case_ids if c not in set(fake.case_ids)]
        extra = [c for c in fake.case_ids if c not in set(real.case_ids)]
        if not missing and not extra:
            raise XbenchError("generated and real images hold the same cases in a different order; sort them alike")
        raise XbenchError(
            f"generated and real images are of different cases: {len(missing)} real cases have no generated "
            f"pair (e.g. {missing[:3]}), {len(extra)} generated cases are not in the test split (e.g. {extra[:3]})"
        )
    if fake.size != real.size:
        raise XbenchError(f"generated images are {fake.size} px, the real ones {real.size}: evaluate at one size")
    if reference is not None:
        if reference.size != real.size:
            raise XbenchError(f"reference images are {reference.size} px, the test images {real.size}")
        leaked = set(reference.case_ids) & set(real.case_ids)
        if leaked:
            raise XbenchError(
                f"{len(leaked)} test cases are also reference (train/val) cases, e.g. {sorted(leaked)[:3]}"
            )


def resolve_device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def half_sample_plan(dataset: str, case_ids, seed: int, draws: int) -> np.ndarray:
    """FID's resampling plan: ``draws`` half-samples of the test cases, from a seed derived from the dataset,
    the test cases (their ids, in order) and the eval seed. Every run of one test split draws the same plan,
    so replicate b of two runs holds the same cases: their difference is paired."""
    ids = hashlib.sha256("\n".join(case_ids).encode()).hexdigest()
    return half_sample_indices(len(case_ids), draws, derive_seed(seed, "half-sample", dataset, ids))


@dataclasses.dataclass(eq=False)  # hashed by identity: its methods are memoised
class Context:
    """One evaluation: the inputs, and what several metrics share (features, judges), computed once."""

    fake: ImageSet
    real: ImageSet
    reference: ImageSet | None
    cfg: "EvalConfig"
    dataset: str
    device: torch.device
    provenance: dict = dataclasses.field(default_factory=dict)
    evidence: dict = dataclasses.field(default_factory=dict)  # "<what>/<view>" -> array (see the module doc)

    @property
    def n(self) -> int:
        return len(self.real)

    @functools.cached_property
    def index(self) -> np.ndarray | None:
        """The bootstrap draws [B, N] shared by every mean (None when intervals are off)."""
        if self.cfg.bootstrap == 0:
            return None
        return bootstrap_indices(self.n, self.cfg.bootstrap, derive_seed(self.cfg.seed, "bootstrap", self.n))

    @functools.cached_property
    def half_index(self) -> np.ndarray | None:
        """FID's half-samples [B, N/2] (None when intervals are off or N < 4): ``half_sample_plan``."""
        if self.cfg.bootstrap == 0 or self.n < 4:
            return None
        return half_sample_plan(self.dataset, self.real.case_ids, self.cfg.seed, self.cfg.bootstrap)

    @functools.cached_property
    def floor_index(self) -> np.ndarray:
        """N reference cases (drawn without replacement, sorted) that make the real floor's second set."""
        if self.reference is None:
            raise Unavailable("the real floor needs the real train+val images (reference=...); none were passed")
        if len(self.reference) < self.n:
            raise Unavailable(
                f"the real floor needs {self.n} reference cases (as many as test cases), got {len(self.reference)}"
            )
        rng = np.random.default_rng(derive_seed(self.cfg.seed, "real-floor", self.n))
        return np.sort(rng.choice(len(self.reference), self.n, replace=False))

    def needs_reference(self, what: str) -> None:
        if self.reference is None:
            raise Unavailable(
                f"needs the real train+val images of {self.dataset} (reference=...) to train the {what}; none were "
                "passed"
            )

    @functools.cache
    def findings_judges(self) -> tuple[dict, dict]:
        """The findings judges ({view: (classifier, candidates, kept classes)}, provenance), loaded once."""
        self.needs_reference("findings classifier")
        if self.reference.findings is None or self.real.findings is None:
            raise Unavailable("needs the finding labels of the reference and test cases (ImageSet.findings)")
        if not findings.candidate_classes(self.reference.findings):
            raise Unavailable(
                f"no finding label has >= {findings.MIN_REFERENCE_POSITIVES} positives among the "
                f"{len(self.reference)} reference cases (a dataset without finding labels, e.g. reports without MeSH "
                "tags, has none)"
            )
        return findings.findings_judges(self.reference, self.dataset, self.real.size[0], self.device)

    @functools.cache
    def extractor(self, family: str):
        """(Extractor, its torch-fidelity module) of a torch-fidelity family: one per family and evaluation."""
        ex = fidelity.inception_extractor() if family == "inception" else fidelity.chexnet_extractor()
        return ex, ex.create(self.device)

    @functools.cache
    def chestfilm_extractor(self) -> chestfilm_extractors.Extractor:
        """The chest-film network of ``eval.chestfilm`` when it is not the judge, loaded once."""
        return chestfilm_extractors.load(self.cfg.chestfilm, self.device)

    def feature_provenance(self, family: str) -> dict:
        """Which extractor, with which weights, made a family's features (recorded with every number)."""
        if family == CHESTFILM and self.cfg.chestfilm == chestfilm_extractors.JUDGE:
            _, judged = self.findings_judges()
            return {
                "name": chestfilm_extractors.JUDGE,
                "extractor": chestfilm.DESCRIPTION,
                "judge_sha256": judged["sha256"],
                "size": judged["size"],
            }
        if family == CHESTFILM:
            return self.chestfilm_extractor().provenance
        return self.extractor(family)[0].provenance

    def images(self, which: str, view: str) -> np.ndarray:
        """uint8 [N, H, W] of "fake", "real", "floor" (N reference cases) or "reference" (all of them)."""
        if which in ("fake", "real"):
            return (self.fake if which == "fake" else self.real).view(view)
        self.needs_reference("real floor")
        rows = self.floor_index if which == "floor" else np.arange(len(self.reference))
        return self.reference.view(view)[rows]

    @functools.cache
    def features(self, family: str, which: str, view: str) -> dict[str, np.ndarray]:
        """role -> float64 [N, d] features of ``images(which, view)``; real ones of a network with a weights file
        cached on disk, the judge's chest-film ones (a small network, a judge cached itself) computed on the spot."""
        if family == CHESTFILM and self.cfg.chestfilm == chestfilm_extractors.JUDGE:
            judged, provenance = self.findings_judges()
            return {"pool": chestfilm.features(judged[view][0], self.images(which, view), provenance["size"])}
        if family == CHESTFILM:
            ex = self.chestfilm_extractor()
            identity = {"extractor": ex.name, "weights_sha256": ex.provenance["sha256"]}
            return self._cached(which, view, identity, lambda x: {"pool": ex.features(x, self.cfg.batch_size)})
        ex, module = self.extractor(family)
        identity = {"extractor": ex.name, "layers": ex.layers, "weights_sha256": ex.weights.sha256}
        return self._cached(which, view, identity, lambda x: fidelity.extract(ex, module, x, self.cfg.batch_size))

    def _cached(self, which: str, view: str, identity: dict, extract: Callable) -> dict[str, np.ndarray]:
        """``extract(images(which, view))``, from the disk cache for real images (keyed by the network's
        ``identity``, the cases and their pixels), computed for generated ones."""
        if which == "fake":
            return extract(self.fake.view(view))
        if which == "real":
            source, rows = self.real, np.arange(self.n)
        else:
            self.needs_reference("real floor")
            source = self.reference
            rows = self.floor_index if which == "floor" else np.arange(len(self.reference))
        images = source.view(view)[rows]
        key = cache.content_key(
            {
                "version": FEATURES_VERSION,
                "dataset": self.dataset,
                "view": view,
                "size": source.size,
                **identity,
                "ids": [source.case_ids[i] for i in rows],
                "pixels": judges.digest(images),
            }
        )
        return cache.load_or_compute("features", key, lambda: extract(images))

    @functools.cache
    def precision_recall_replicates(self, family: str, view: str) -> np.ndarray:
        """float64 [B, 2]: precision and recall of the generated against the real features on each of FID's
        half-samples (``fidelity.precision_recall_replicates``), computed once for both metrics."""
        fake, real = (self.features(family, which, view)["pool"] for which in ("fake", "real"))
        return fidelity.precision_recall_replicates(fake, real, self.half_index)

    def per_case(self, name: str, values: np.ndarray, view: str = "pair") -> dict:
        """name, name_n and name_ci of a mean over per-case values (kept as evidence ``name/view``)."""
        self.evidence[f"{name}/{view}"] = np.asarray(values, dtype=np.float64)
        out = {name: float(np.mean(values)), f"{name}_n": len(values)}
        if self.index is not None:
            out[f"{name}_ci"], dropped = mean_interval(values, self.index)
            if dropped:
                out[f"{name}_ci_dropped_draws"] = dropped
        return out

    def statistic(self, name: str, fn: Callable) -> dict:
        """name, name_n and name_ci (percentile bootstrap over cases) of a statistic of case indices; ``fn`` may
        return (value, classes left out)."""
        value, dropped = _split(fn(np.arange(self.n)))
        out = {name: value, f"{name}_n": self.n}
        if dropped:
            out[f"{name}_classes_dropped"] = dropped
        if self.index is not None:
            draws, left_out = resampled(fn, self.index)
            ci, bad = percentile_interval(draws)
            out[f"{name}_ci"] = ci
            if bad:
                out[f"{name}_ci_dropped_draws"] = bad
            if left_out:
                out[f"{name}_ci_classes_dropped"] = left_out
        return out


def _split(out) -> tuple[float, int]:
    return (float(out[0]), int(out[1])) if isinstance(out, tuple) else (float(out), 0)


# ---------------------------------------------------------------------------------------------- the metrics
