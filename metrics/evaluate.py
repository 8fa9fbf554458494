"""``evaluate(fake, real, cfg, dataset=..., reference=...)``: every requested metric, per view and per pair.

Returns the result.json "metrics" block: ``{"frontal": {...}, "lateral": {...}, "pair": {...}, "unavailable": {name:
why}, "provenance": {name: {...}}}``. Each value is a plain float with ``<name>_n`` (the number of test cases) and
``<name>_ci`` (95 % interval over test cases, ``metrics.stats``: a percentile bootstrap for means of per-case
values, the same resampled cases for every metric; for FID, half-samples without replacement from a plan derived
from the dataset, the test cases and the eval seed, so two runs' replicates are paired case for case; for KID, the
spread of its 100 subsets, drawn alike for every run). Counts are never silent: ``<name>_ci_dropped_draws``
(resamples on which the metric was undefined), ``<name>_classes_dropped`` and ``<name>_ci_classes_dropped`` (finding
classes without both labels among the test cases, at the point and summed over the draws), each written when not
zero.

Calibration, measured on real images beside every model score: ``<fid|kid|precision|recall>_..._real_floor`` (the
same metric between the real test images and as many real reference cases, drawn with the eval seed: what two real
sets of this N score), the VC judge's ceiling, floor and AUROC, and ``finding_auc_real``. The evidence behind every
number (``evaluate(..., evidence={})`` fills it): per-case values by case id (SSIM per view, the VC judge's matched,
deranged and real pairs, the findings judge's scores with the labels) and the replicates of the set metrics (FID
half-samples, KID subsets), so a later test can be run on what was recorded (``benchmark.pipeline.verdicts``).
Nothing is rounded. A metric that cannot be computed (missing weights, too few cases, no labels, no reference
images) is listed under "unavailable" with the reason and the fix, never reported as a number.
"""

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmark.core import cache
from benchmark.core.errors import XbenchError
from benchmark.core.seeds import derive_seed
from metrics import fidelity, findings, judges, view_consistency, weights
from metrics.base import EvalConfig, ImageSet, Unavailable
from metrics.frechet import frechet_distance, frechet_replicates
from metrics.registry import PROTOCOL, VIEWS, get_metric
from metrics.ssim import ssim_scores
from metrics.stats import (
    auroc,
    bootstrap_indices,
    centred_interval,
    half_sample_indices,
    macro_auroc,
    mean_interval,
    percentile_interval,
    resampled,
)

FEATURES_VERSION = "features-1"  # bump when feature extraction changes: real-image features are cached by it


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


@dataclasses.dataclass(eq=False)  # hashed by identity: its methods are memoised
class Context:
    """One evaluation: the inputs, and what several metrics share (features, judges), computed once."""

    fake: ImageSet
    real: ImageSet
    reference: ImageSet | None
    cfg: EvalConfig
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

    @functools.cache
    def extractor(self, family: str):
        """(Extractor, its torch-fidelity module): one per family and evaluation."""
        ex = fidelity.inception_extractor() if family == "inception" else fidelity.chexnet_extractor()
        return ex, ex.create(self.device)

    @functools.cache
    def features(self, family: str, which: str, view: str) -> dict[str, np.ndarray]:
        """role -> float64 [N, d] features of "fake", "real" or "floor" images; real ones cached on disk."""
        ex, module = self.extractor(family)
        if which == "fake":
            return fidelity.extract(ex, module, self.fake.view(view), self.cfg.batch_size)
        source = self.real if which == "real" else self.reference
        rows = np.arange(len(source)) if which == "real" else self.floor_index
        images = source.view(view)[rows]
        key = cache.content_key(
            {
                "version": FEATURES_VERSION,
                "dataset": self.dataset,
                "view": view,
                "size": source.size,
                "extractor": ex.name,
                "layers": ex.layers,
                "weights_sha256": ex.weights.sha256,
                "ids": [source.case_ids[i] for i in rows],
                "pixels": judges.digest(images),
            }
        )
        hit = cache.load("features", key)
        if hit is None:
            hit = fidelity.extract(ex, module, images, self.cfg.batch_size)
            cache.save("features", key, hit)
        return hit

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


def _inception_score(ctx: Context, name: str, family: str) -> dict:
    ex, _ = ctx.extractor(family)
    if "logits" not in ex.layers:
        raise Unavailable(fidelity.NO_LOGITS + weights.how_to_get("inception-tf-full"))
    ctx.provenance[name] = ex.provenance
    score = fidelity.inception_score if family == "inception" else fidelity.xraygan_inception_score
    out = {}
    for view in VIEWS:
        logits = ctx.features(family, "fake", view)["logits"]
        mean, std = score(logits)
        out[view] = {name: mean, f"{name}_std": std, f"{name}_n": ctx.n}
        if ctx.index is not None:
            out[view][f"{name}_ci"], bad = percentile_interval(resampled(lambda i: score(logits[i])[0], ctx.index)[0])
            if bad:
                out[view][f"{name}_ci_dropped_draws"] = bad
    return out


def _real_floor(ctx: Context, name: str, family: str, view: str, fn: Callable) -> dict:
    """``<name>_real_floor``: ``fn`` between the real test images and N real reference cases (or why not)."""
    try:
        floor = fn(ctx.features(family, "floor", view)["pool"], ctx.features(family, "real", view)["pool"])
    except Unavailable as why:
        ctx.provenance.setdefault(f"{name}_real_floor", {})["unavailable"] = str(why)
        return {}
    return {f"{name}_real_floor": floor, f"{name}_real_floor_n": ctx.n}


def _replicate_interval(ctx: Context, name: str, view: str, value: float, draws: np.ndarray) -> dict:
    """``name_ci`` from a set metric's replicates (their spread centred on ``value``, ``metrics.stats``), which
    are kept as evidence ``name/view``."""
    ctx.evidence[f"{name}/{view}"] = draws
    out = {}
    out[f"{name}_ci"], bad = centred_interval(value, draws)
    if bad:
        out[f"{name}_ci_dropped_draws"] = bad
    return out


def half_sample_plan(dataset: str, case_ids, seed: int, draws: int) -> np.ndarray:
    """FID's resampling plan: ``draws`` half-samples of the test cases, from a seed derived from the dataset,
    the test cases (their ids, in order) and the eval seed. Every run of one test split draws the same plan,
    so replicate b of two runs holds the same cases: their difference is paired."""
    ids = hashlib.sha256("\n".join(case_ids).encode()).hexdigest()
    return half_sample_indices(len(case_ids), draws, derive_seed(seed, "half-sample", dataset, ids))


def _distribution(ctx: Context, name: str, family: str, kind: str) -> dict:
    ex, _ = ctx.extractor(family)
    ctx.provenance[name] = ex.provenance
    if ctx.n < 2:
        raise Unavailable(f"needs at least 2 test cases per view, got {ctx.n}")
    out = {}
    for view in VIEWS:
        f1, f2 = ctx.features(family, "fake", view)["pool"], ctx.features(family, "real", view)["pool"]
        if kind == "fid":
            out[view] = {name: frechet_distance(f1, f2, ctx.device), f"{name}_n": ctx.n}
            if ctx.half_index is not None:
                draws = frechet_replicates(f1, f2, ctx.half_index, ctx.device)
                out[view] |= _replicate_interval(ctx, name, view, out[view][name], draws)
            out[view] |= _real_floor(ctx, name, family, view, lambda a, b: frechet_distance(a, b, ctx.device))
        elif kind == "kid":
            subsets = fidelity.kid_subsets(f1, f2)
            out[view] = {name: float(subsets.mean()), f"{name}_std": float(subsets.std()), f"{name}_n": ctx.n}
            out[view] |= _replicate_interval(ctx, name, view, out[view][name], subsets)
            out[view] |= _real_floor(ctx, name, family, view, lambda a, b: fidelity.kid(a, b)[0])
        else:  # "precision" or "recall"
            pick = 0 if kind == "precision" else 1
            out[view] = {name: fidelity.precision_recall(f1, f2)[pick], f"{name}_n": ctx.n}
            out[view] |= _real_floor(ctx, name, family, view, lambda a, b: fidelity.precision_recall(a, b)[pick])
    return out


def _ssim(ctx: Context) -> dict:
    return {view: ctx.per_case("ssim", ssim_scores(ctx.fake.view(view), ctx.real.view(view)), view) for view in VIEWS}


def _needs_reference(ctx: Context, what: str) -> None:
    if ctx.reference is None:
        raise Unavailable(
            f"needs the real train+val images of {ctx.dataset} (reference=...) to train the {what}; none were passed"
        )


def _vc(ctx: Context) -> dict:
    _needs_reference(ctx, "view-consistency judge")
    if ctx.n < 2 or len(ctx.reference) < 2:
        raise Unavailable(f"needs at least 2 test and 2 reference cases, got {ctx.n} and {len(ctx.reference)}")
    net, provenance = view_consistency.pair_judge(ctx.reference, ctx.dataset, ctx.real.size[0], ctx.device)
    ctx.provenance["vc"] = provenance
    size = provenance["size"]
    real_f, real_l = ctx.real.view("frontal"), ctx.real.view("lateral")
    fake_f, fake_l = ctx.fake.view("frontal"), ctx.fake.view("lateral")
    fake = view_consistency.p_same(net, fake_f, fake_l, size)
    matched = view_consistency.p_same(net, real_f, real_l, size)
    other = view_consistency.derangement(ctx.n, derive_seed(ctx.cfg.seed, "vc-mismatched"))
    mismatched = view_consistency.p_same(net, real_f, real_l[other], size)
    # The method's own frontals against other cases' generated laterals: as high as ``vc`` when its two views
    # share nothing of a patient (two generators that see only the report), lower when they do.
    deranged = view_consistency.p_same(net, fake_f, fake_l[other], size)
    ctx.evidence["vc_derangement/pair"] = other
    labels = np.r_[np.ones(ctx.n, bool), np.zeros(ctx.n, bool)]
    out = ctx.per_case("vc", fake) | ctx.per_case("vc_deranged", deranged) | ctx.per_case("vc_real_matched", matched)
    out |= ctx.per_case("vc_real_mismatched", mismatched)
    out |= ctx.statistic("vc_evaluator_auroc", lambda i: auroc(np.r_[matched[i], mismatched[i]], labels))
    return {"pair": out}


def _finding_auc(ctx: Context) -> dict:
    _needs_reference(ctx, "findings classifier")
    if ctx.reference.findings is None or ctx.real.findings is None:
        raise Unavailable("needs the finding labels of the reference and test cases (ImageSet.findings)")
    if not findings.candidate_classes(ctx.reference.findings):
        raise Unavailable(
            f"no finding label has >= {findings.MIN_REFERENCE_POSITIVES} positives among the {len(ctx.reference)} "
            "reference cases (a dataset without finding labels, e.g. reports without MeSH tags, has none)"
        )
    judged, provenance = findings.findings_judges(ctx.reference, ctx.dataset, ctx.real.size[0], ctx.device)
    ctx.provenance["finding_auc"] = provenance
    size = provenance["size"]
    out = {}
    for v, view in enumerate(VIEWS):
        net, candidates, kept = judged[view]
        if not kept:
            ctx.provenance["finding_auc"].setdefault("unavailable", {})[view] = (
                f"no finding reaches held-out AUROC {findings.SELECT_AUROC} in the {view} view"
            )
            continue
        cols = [candidates.index(c) for c in kept]
        y = findings.label_matrix(ctx.real.findings, kept)
        p_fake = findings.predict(net, ctx.fake.view(view), size)[:, cols]
        p_real = findings.predict(net, ctx.real.view(view), size)[:, cols]
        ctx.evidence |= {
            f"finding_scores/{view}": p_fake,
            f"finding_scores_real/{view}": p_real,
            f"finding_labels/{view}": y,
            f"finding_classes/{view}": np.asarray(kept),
        }
        out[view] = ctx.statistic("finding_auc", lambda i: macro_auroc(p_fake[i], y[i]))
        out[view] |= ctx.statistic("finding_auc_real", lambda i: macro_auroc(p_real[i], y[i]))
        out[view]["finding_auc_classes"] = len(kept)
        if not np.isfinite(out[view]["finding_auc"]):
            raise Unavailable(f"no kept finding class has both positive and negative test cases in the {view} view")
    if not out:
        raise Unavailable(
            f"the findings judge sees no finding at {size} px (held-out AUROC >= {findings.SELECT_AUROC})"
        )
    return out


COMPUTE: dict[str, Callable[[Context], dict]] = {
    "is_inception": lambda ctx: _inception_score(ctx, "is_inception", "inception"),
    "fid_inception": lambda ctx: _distribution(ctx, "fid_inception", "inception", "fid"),
    "kid_inception": lambda ctx: _distribution(ctx, "kid_inception", "inception", "kid"),
    "precision_inception": lambda ctx: _distribution(ctx, "precision_inception", "inception", "precision"),
    "recall_inception": lambda ctx: _distribution(ctx, "recall_inception", "inception", "recall"),
    "fid_chexnet": lambda ctx: _distribution(ctx, "fid_chexnet", "chexnet", "fid"),
    "is_chexnet": lambda ctx: _inception_score(ctx, "is_chexnet", "chexnet"),
    "ssim": _ssim,
    "vc": _vc,
    "finding_auc": _finding_auc,
}


def evaluate(
    fake: ImageSet,
    real: ImageSet,
    cfg: EvalConfig,
    *,
    dataset: str,
    reference: ImageSet | None = None,
    timings: dict | None = None,
    evidence: dict | None = None,
) -> dict:
    """Every metric of ``cfg.metrics`` for generated images ``fake`` against the test split's ``real`` images.

    ``reference``: the real train+val images with findings, which the ``vc`` evaluator and the findings
    classifier are trained on (cached per dataset and content); without it those two are unavailable.
    ``timings``: when a dict is given, it is filled with metric name -> wall seconds of that metric, for each
    metric computed. Work that metrics share is charged to the first metric that does it: FID and KID share
    the Inception features, so the extraction is charged to whichever of them comes first in ``cfg.metrics``.
    A metric found unavailable gets no entry, even if it did some shared work first (e.g. ``is_inception``
    loading the Inception network before finding it has no logits): that time is in no metric's entry.
    ``evidence``: when a dict is given, it is filled with the per-case values and replicates behind the numbers
    ("<what>/<view>" -> array; "case_ids" and "eval_seed" name the cases and the seed of the plans).
    """
    check_inputs(fake, real, reference)
    ctx = Context(fake, real, reference, cfg, dataset, resolve_device(cfg.device))
    out: dict = {"frontal": {}, "lateral": {}, "pair": {}, "unavailable": {}}
    for name in cfg.metrics:
        get_metric(name)
        start = clock(ctx.device) if timings is not None else 0.0
        try:
            values = COMPUTE[name](ctx)
        except Unavailable as why:
            out["unavailable"][name] = str(why)
            continue
        if timings is not None:
            timings[name] = clock(ctx.device) - start
        for scope, entries in values.items():
            out[scope].update(entries)
    out["provenance"] = ctx.provenance | {"protocol": {"metrics": PROTOCOL, "judges": judges.PROTOCOL}}
    if evidence is not None:
        evidence |= ctx.evidence | {"case_ids": np.asarray(real.case_ids), "eval_seed": np.asarray(cfg.seed)}
    return out


def clock(device: torch.device) -> float:
    if device.type == "cuda":  # kernels run asynchronously: wait for them before reading the clock
        torch.cuda.synchronize(device)
    return time.perf_counter()
