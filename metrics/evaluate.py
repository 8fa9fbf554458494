"""``evaluate(fake, real, cfg, dataset=..., reference=...)``: every requested metric, per view and per pair.

Returns the result.json "metrics" block: ``{"frontal": {...}, "lateral": {...}, "pair": {...}, "unavailable": {name:
why}, "provenance": {name: {...}}}``. Each value is a plain float with ``<name>_n`` (the number of test cases) and
``<name>_ci`` (95 % interval over test cases, ``metrics.stats``: a percentile bootstrap for means of per-case
values, the same resampled cases for every metric; for FID and precision/recall, half-samples without replacement
from a plan derived from the dataset, the test cases and the eval seed, so two runs' replicates are paired case for
case; for KID, the spread of its 100 subsets, drawn alike for every run). Counts are never silent:
``<name>_ci_dropped_draws`` (resamples on which the metric was undefined), ``<name>_classes_dropped`` and
``<name>_ci_classes_dropped`` (finding classes without both labels among the test cases, at the point and summed
over the draws), each written when not zero.

Calibration, measured on real images beside every model score: ``<fid|kid|precision|recall>_..._real_floor`` (the
same metric between the real test images and as many real reference cases, drawn with the eval seed: what two real
sets of this N score), the VC judge's ceiling, floor and AUROC, and ``finding_auc_real``. The evidence behind every
number (``evaluate(..., evidence={})`` fills it): per-case values by case id (SSIM per view, the VC judge's matched,
deranged and real pairs, the findings judge's scores with the labels) and the replicates of the set metrics (FID
and precision/recall half-samples, KID subsets), so a later test can be run on what was recorded
(``benchmark.pipeline.verdicts``).
Nothing is rounded. A metric that cannot be computed (missing weights, too few cases, no labels, no reference
images) is listed under "unavailable" with the reason and the fix, never reported as a number.
"""

import time

import numpy as np
import torch

from metrics import judges
from metrics.base import ImageSet, Unavailable
from metrics.config import EvalConfig
from metrics.context import Context, check_inputs, resolve_device
from metrics.registry import PROTOCOL, get_metric


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
            values = get_metric(name).compute(ctx, name)
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
