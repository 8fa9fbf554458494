"""How each metric is computed from an evaluation's ``Context``: one function per metric family, which a
``MetricSpec.compute`` in the registry names. Each is called ``(ctx, name)``, returns ``{scope: {key: value}}``
and keeps its evidence in ``ctx.evidence``."""

from collections.abc import Callable

import numpy as np

from benchmark.core.seeds import derive_seed
from metrics import chestfilm, fidelity, findings, view_consistency, weights
from metrics.base import VIEWS, Unavailable
from metrics.context import Context
from metrics.frechet import frechet_distance, frechet_replicates
from metrics.ssim import ssim_scores
from metrics.stats import auroc, centred_interval, macro_auroc, percentile_interval, resampled


def inception_score(ctx: Context, name: str, family: str) -> dict:
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


def distribution(ctx: Context, name: str, family: str, kind: str) -> dict:
    ctx.provenance[name] = ctx.feature_provenance(family)
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
        else:  # "precision" or "recall" (torch-fidelity, k = 3), "density" or "coverage" (prdc, k = 5)
            fn = fidelity.precision_recall if kind in ("precision", "recall") else chestfilm.density_coverage
            pick = 0 if kind in ("precision", "density") else 1
            out[view] = {name: fn(f1, f2)[pick], f"{name}_n": ctx.n}
            # an interval as FID's, from the half-sample plan (a half-sample needs more cases than the k of its balls)
            halves = ctx.half_index
            if kind in ("precision", "recall") and halves is not None and halves.shape[1] > fidelity.PRC_NEIGHBOURHOOD:
                draws = ctx.precision_recall_replicates(family, view)[:, pick]
                out[view] |= _replicate_interval(ctx, name, view, out[view][name], draws)
            out[view] |= _real_floor(ctx, name, family, view, lambda a, b: fn(a, b)[pick])
    return out


def copy_rate(ctx: Context, name: str) -> dict:
    """Memorisation (``metrics.chestfilm``): per view, the share of generated films nearer a training film than the
    1st percentile of the real test films' own nearest-training distances, in chest-film features (``name``) and
    in pixels (``<name>_pixels``); ``<name>_real`` is the real test films' own share (about 1 % by construction)."""
    ctx.provenance[name] = ctx.feature_provenance("chestfilm") | {"percentile": chestfilm.COPY_PERCENTILE}
    if ctx.n < 2:
        raise Unavailable(f"needs at least 2 test cases per view, got {ctx.n}")
    spaces = {
        name: lambda which, view: ctx.features("chestfilm", which, view)["pool"],
        f"{name}_pixels": lambda which, view: chestfilm.pixels_of(ctx.images(which, view)),
    }
    out = {}
    for view in VIEWS:
        out[view] = {}
        for key, space in spaces.items():
            train = space("reference", view)
            d_fake, neighbour = chestfilm.nearest(space("fake", view), train)
            d_real, _ = chestfilm.nearest(space("real", view), train)
            threshold = chestfilm.copy_threshold(d_real)
            ctx.evidence |= {
                f"{key}_distance/{view}": d_fake,
                f"{key}_neighbour/{view}": np.asarray(ctx.reference.case_ids)[neighbour],
                f"{key}_threshold/{view}": np.asarray(threshold),
            }
            out[view] |= ctx.per_case(key, (d_fake < threshold).astype(np.float64), view)
            out[view] |= ctx.per_case(f"{key}_real", (d_real < threshold).astype(np.float64), view)
    return out


def ssim(ctx: Context, name: str) -> dict:
    return {view: ctx.per_case(name, ssim_scores(ctx.fake.view(view), ctx.real.view(view)), view) for view in VIEWS}


def vc(ctx: Context, name: str) -> dict:
    ctx.needs_reference("view-consistency judge")
    if ctx.n < 2 or len(ctx.reference) < 2:
        raise Unavailable(f"needs at least 2 test and 2 reference cases, got {ctx.n} and {len(ctx.reference)}")
    net, provenance = view_consistency.pair_judge(ctx.reference, ctx.dataset, ctx.real.size[0], ctx.device)
    ctx.provenance[name] = provenance
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
    out = ctx.per_case(name, fake) | ctx.per_case("vc_deranged", deranged) | ctx.per_case("vc_real_matched", matched)
    out |= ctx.per_case("vc_real_mismatched", mismatched)
    out |= ctx.statistic("vc_evaluator_auroc", lambda i: auroc(np.r_[matched[i], mismatched[i]], labels))
    return {"pair": out}


def finding_auc(ctx: Context, name: str) -> dict:
    judged, provenance = ctx.findings_judges()
    ctx.provenance[name] = provenance
    size = provenance["size"]
    out = {}
    for v, view in enumerate(VIEWS):
        net, candidates, kept = judged[view]
        if not kept:
            ctx.provenance[name].setdefault("unavailable", {})[view] = (
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
        out[view] = ctx.statistic(name, lambda i: macro_auroc(p_fake[i], y[i]))
        out[view] |= ctx.statistic("finding_auc_real", lambda i: macro_auroc(p_real[i], y[i]))
        if ctx.n >= 2:  # real films of another case (vc's floor derangement): what ignoring the report scores
            other = view_consistency.derangement(ctx.n, derive_seed(ctx.cfg.seed, "vc-mismatched"))
            out[view] |= ctx.statistic("finding_auc_other_case", lambda i: macro_auroc(p_real[other][i], y[i]))
        out[view]["finding_auc_classes"] = len(kept)
        if not np.isfinite(out[view][name]):
            raise Unavailable(f"no kept finding class has both positive and negative test cases in the {view} view")
    if not out:
        raise Unavailable(
            f"the findings judge sees no finding at {size} px (held-out AUROC >= {findings.SELECT_AUROC})"
        )
    return out
