"""xbench metrics: IS / FID / KID (torch-fidelity), SSIM, view consistency and finding fidelity.

``METRICS`` is the registry (a metric name is a frozen protocol); ``evaluate(fake, real, cfg, dataset=...,
reference=...)`` computes the requested metrics per view and per pair with N and 95% bootstrap intervals.
Weights: ``metrics.weights`` (manifest, resolution, ``xbench weights list|verify|import``).
"""

from metrics.base import ImageSet, Unavailable
from metrics.config import EvalConfig
from metrics.evaluate import evaluate
from metrics.registry import METRICS, PROTOCOL, MetricSpec, get_metric

__all__ = ["METRICS", "PROTOCOL", "EvalConfig", "ImageSet", "MetricSpec", "Unavailable", "evaluate", "get_metric"]
