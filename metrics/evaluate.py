"""``evaluate(fake, real, cfg, dataset=..., reference=...)``: every requested metric, per view and per pair.

Returns the result.json "metrics" block: ``{"frontal": {...}, "lateral": {...}, "pair": {...},
"unavailable": {name: why}, "provenance": {name: {...}}}``. Each value is a plain float with ``<name>_n`` (the
number of test cases) and ``<name>_ci`` (95% percentile bootstrap interval over test cases: the same resampled
case indices for every metric; FID/KID intervals only with ``bootstrap_fid``). Nothing is rounded. A metric that
cannot be computed (missing weights, too few cases, no labels, no reference images) is listed under
"unavailable" with the reason and the fix, never reported as a number.
"""

import dataclasses
import functools
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmark import cache
from benchmark.core.seeds import derive_seed
from benchmark.errors import XbenchError
from metrics import fidelity, findings, view_consistency, weights
from metrics.base import EvalConfig, ImageSet, Unavailable
from metrics.evaluators import digest
from metrics.frechet import frechet_distance
from metrics.registry import VIEWS, get_metric
from metrics.ssim import ssim_scores
from metrics.stats import auroc, bootstrap_indices, macro_auroc, mean_interval, statistic_interval

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
    """One evaluation: the inputs, and what several metrics share (features, evaluators), computed once."""

    fake: ImageSet
    real: ImageSet
    reference: ImageSet | None
    cfg: EvalConfig
    dataset: str
    device: torch.device
    provenance: dict = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.real)

    @functools.cached_property
    def index(self) -> np.ndarray | None:
        """The bootstrap draws [B, N] shared by every metric (None when intervals are off)."""
        if self.cfg.bootstrap == 0:
            return None
        return bootstrap_indices(self.n, self.cfg.bootstrap, derive_seed(self.cfg.seed, "bootstrap", self.n))

    @functools.cache
    def extractor(self, family: str):
        """(Extractor, its torch-fidelity module): one per family and evaluation."""
        ex = fidelity.inception_extractor() if family == "inception" else fidelity.chexnet_extractor()
        return ex, ex.create(self.device)

    @functools.cache
    def features(self, family: str, which: str, view: str) -> dict[str, np.ndarray]:
        """role -> float64 [N, d] features; real-image features are cached on disk by content."""
        ex, module = self.extractor(family)
        images = (self.real if which == "real" else self.fake).view(view)
        if which != "real":
            return fidelity.extract(ex, module, images, self.cfg.batch_size)
        key = cache.content_key(
            {
                "version": FEATURES_VERSION,
                "dataset": self.dataset,
                "view": view,
                "size": self.real.size,
                "extractor": ex.name,
                "layers": ex.layers,
                "weights_sha256": ex.weights.sha256,
                "ids": self.real.case_ids,
                "pixels": digest(images),
            }
        )
        hit = cache.load("features", key)
        if hit is None:
            hit = fidelity.extract(ex, module, images, self.cfg.batch_size)
            cache.save("features", key, hit)
        return hit

    def per_case(self, name: str, values: np.ndarray) -> dict:
        """name, name_n and name_ci of a mean over per-case values."""
        out = {name: float(np.mean(values)), f"{name}_n": len(values)}
        if self.index is not None:
            out[f"{name}_ci"] = mean_interval(values, self.index)
        return out

    def statistic(self, name: str, fn: Callable[[np.ndarray], float], with_ci: bool = True) -> dict:
        """name, name_n and (when asked) name_ci of a statistic of the resampled case indices."""
        out = {name: float(fn(np.arange(self.n))), f"{name}_n": self.n}
        if with_ci and self.index is not None:
            out[f"{name}_ci"] = statistic_interval(fn, self.index)
        return out


# ---------------------------------------------------------------------------------------------- the metrics


def _distribution(ctx: Context, name: str, family: str, kind: str) -> dict:
    ex, _ = ctx.extractor(family)
    if kind == "is" and "logits" not in ex.layers:
        raise Unavailable(fidelity.NO_LOGITS + weights.how_to_get("inception-tf-full"))
    ctx.provenance[name] = ex.provenance
    out = {}
    for view in VIEWS:
        fake = ctx.features(family, "fake", view)
        if kind == "is":
            logits = fake["logits"]
            mean, std = fidelity.inception_score(logits)
            out[view] = {name: mean, f"{name}_std": std, f"{name}_n": ctx.n}
            if ctx.index is not None:
                out[view][f"{name}_ci"] = statistic_interval(
                    lambda i: fidelity.inception_score(logits[i])[0], ctx.index
                )
            continue
        f1, f2 = fake["pool"], ctx.features(family, "real", view)["pool"]
        if ctx.n < 2:
            raise Unavailable(f"needs at least 2 test cases per view, got {ctx.n}")
        if kind == "fid":
            out[view] = ctx.statistic(
                name, lambda i: frechet_distance(f1[i], f2[i], ctx.device), with_ci=ctx.cfg.bootstrap_fid
            )
        else:
            mean, std = fidelity.kid(f1, f2)
            out[view] = {name: mean, f"{name}_std": std, f"{name}_n": ctx.n}
            if ctx.cfg.bootstrap_fid and ctx.index is not None:
                out[view][f"{name}_ci"] = statistic_interval(lambda i: fidelity.kid(f1[i], f2[i])[0], ctx.index)
    return out


def _ssim(ctx: Context) -> dict:
    return {view: ctx.per_case("ssim", ssim_scores(ctx.fake.view(view), ctx.real.view(view))) for view in VIEWS}


def _needs_reference(ctx: Context, what: str) -> None:
    if ctx.reference is None:
        raise Unavailable(
            f"needs the real train+val images of {ctx.dataset} (reference=...) to train the {what}; none were passed"
        )


def _vc(ctx: Context) -> dict:
    _needs_reference(ctx, "view-consistency evaluator")
    if ctx.n < 2 or len(ctx.reference) < 2:
        raise Unavailable(f"needs at least 2 test and 2 reference cases, got {ctx.n} and {len(ctx.reference)}")
    size = ctx.cfg.vc_size or ctx.real.size[0]
    vcn, sha, cached = view_consistency.vc_evaluator(ctx.reference, ctx.dataset, ctx.cfg, size, ctx.device)
    ctx.provenance["vc"] = {
        "evaluator": "methods.vcn.VCN (Siamese ResNet-18)",
        "sha256": sha,
        "size": size,
        "reference_cases": len(ctx.reference),
        "from_cache": cached,
    }
    real_f, real_l = ctx.real.view("frontal"), ctx.real.view("lateral")
    fake = view_consistency.p_same(vcn, ctx.fake.view("frontal"), ctx.fake.view("lateral"), size)
    matched = view_consistency.p_same(vcn, real_f, real_l, size)
    other = view_consistency.derangement(ctx.n, derive_seed(ctx.cfg.seed, "vc-mismatched"))
    mismatched = view_consistency.p_same(vcn, real_f, real_l[other], size)
    labels = np.r_[np.ones(ctx.n, bool), np.zeros(ctx.n, bool)]
    out = ctx.per_case("vc", fake) | ctx.per_case("vc_real_matched", matched)
    out |= ctx.per_case("vc_real_mismatched", mismatched)
    out |= ctx.statistic("vc_evaluator_auroc", lambda i: auroc(np.r_[matched[i], mismatched[i]], labels))
    return {"pair": out}


def _finding_auc(ctx: Context) -> dict:
    _needs_reference(ctx, "findings classifier")
    if ctx.reference.findings is None or ctx.real.findings is None:
        raise Unavailable("needs the reports' findings of the reference and test cases (ImageSet.findings)")
    classes = findings.reference_classes(ctx.dataset, ctx.reference.findings)
    test_labels = findings.label_matrix(ctx.dataset, ctx.real.findings, classes)
    positives = test_labels.sum(0)
    keep = (positives >= findings.MIN_TEST_POSITIVES) & (ctx.n - positives >= findings.MIN_TEST_POSITIVES)
    if not keep.any():
        raise Unavailable(
            f"no finding has >= {findings.MIN_REFERENCE_POSITIVES} reference and >= {findings.MIN_TEST_POSITIVES} "
            f"test positives (and negatives) among {len(ctx.reference)} reference and {ctx.n} test cases"
            + ("; mimic reports carry no MeSH tags" if ctx.dataset == "mimic" else "")
        )
    nets, classes, sha, cached = findings.findings_classifiers(ctx.reference, ctx.dataset, ctx.cfg, ctx.device)
    used = [c for c, k in zip(classes, keep) if k]
    ctx.provenance["finding_auc"] = {
        "classifier": f"metrics.findings.FindingsNet (width {ctx.cfg.finding_width})",
        "sha256": sha,
        "size": ctx.cfg.finding_size,
        "classes": used,
        "reference_cases": len(ctx.reference),
        "from_cache": cached,
    }
    y = test_labels[:, keep]
    out = {}
    for view in VIEWS:
        p_fake = findings.predict(nets[view], ctx.fake.view(view), ctx.cfg.finding_size)[:, keep]
        p_real = findings.predict(nets[view], ctx.real.view(view), ctx.cfg.finding_size)[:, keep]
        out[view] = ctx.statistic("finding_auc", lambda i: macro_auroc(p_fake[i], y[i]))
        out[view] |= ctx.statistic("finding_auc_real", lambda i: macro_auroc(p_real[i], y[i]))
        out[view]["finding_auc_classes"] = len(used)
    return out


COMPUTE: dict[str, Callable[[Context], dict]] = {
    "is_inception": lambda ctx: _distribution(ctx, "is_inception", "inception", "is"),
    "fid_inception": lambda ctx: _distribution(ctx, "fid_inception", "inception", "fid"),
    "kid_inception": lambda ctx: _distribution(ctx, "kid_inception", "inception", "kid"),
    "fid_chexnet": lambda ctx: _distribution(ctx, "fid_chexnet", "chexnet", "fid"),
    "is_chexnet": lambda ctx: _distribution(ctx, "is_chexnet", "chexnet", "is"),
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
) -> dict:
    """Every metric of ``cfg.metrics`` for generated images ``fake`` against the test split's ``real`` images.

    ``reference``: the real train+val images with findings, which the ``vc`` evaluator and the findings
    classifier are trained on (cached per dataset and content); without it those two are unavailable.
    ``timings``: when a dict is given, it is filled with metric name -> wall seconds of that metric, for each
    metric computed. Work that metrics share is charged to the first metric that does it: FID and KID share
    the Inception features, so the extraction is charged to whichever of them comes first in ``cfg.metrics``.
    A metric found unavailable gets no entry, even if it did some shared work first (e.g. ``is_inception``
    loading the Inception network before finding it has no logits): that time is in no metric's entry.
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
    out["provenance"] = ctx.provenance
    return out


def clock(device: torch.device) -> float:
    if device.type == "cuda":  # kernels run asynchronously: wait for them before reading the clock
        torch.cuda.synchronize(device)
    return time.perf_counter()
