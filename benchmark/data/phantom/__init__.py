"""A procedural 3D thorax phantom, projected to a frontal (PA) and a lateral radiograph of the same patient.

``render_case(case_id, findings)`` samples a patient from the case id (sha256-seeded, deterministic), turns
the MeSH findings into changes of its anatomy and extra solids, and sums attenuation analytically along
parallel rays: along y for the PA view (patient's right on the image's left), along x for the lateral
(anterior on the image's left). Both views are projections of the same solids, framed like films (the chest
edge to edge, squashed to a square as the image pipeline squashes real films); only the arms differ (down on
the PA film, raised on the lateral). numpy only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from benchmark.data.reports import Finding

RENDERER_VERSION = "phantom-2.1"  # a change to what the renderer draws changes this (cache keys, records)

__all__ = ["RENDERER_VERSION", "RenderedCase", "is_modelled", "render_case", "build_case"]


@dataclasses.dataclass(frozen=True)
class RenderedCase:
    frontal: np.ndarray  # uint8 [size, size], PA, radiological convention
    lateral: np.ndarray  # uint8 [size, size], anterior on the left
    modelled: tuple[Finding, ...]  # findings the renderer drew
    unmodelled: tuple[Finding, ...]  # abnormal findings it does not model


def is_modelled(finding: Finding) -> bool:
    """Whether the renderer draws this finding (never for normal / No Indexing)."""
    from benchmark.data.phantom.findings import handler_name

    return handler_name(finding) is not None


def build_case(case_id: str, findings: Sequence[Finding], *, seed: int = 0):
    """(anatomy, modelled, unmodelled): the 3D phantom of one case, before projection."""
    from benchmark.data.phantom import findings as fx
    from benchmark.data.phantom.anatomy import build_anatomy, finalize_vessels, rng_for, sample_patient

    patient = sample_patient(rng_for(case_id, seed, "anatomy"))
    plan, modelled, unmodelled = [], [], []
    seen: dict[str, int] = {}
    for f in findings:
        if f.is_normal:
            continue
        name = fx.handler_name(f)
        if name is None:
            unmodelled.append(f)
            continue
        k = seen.get(f.tag, 0)
        seen[f.tag] = k + 1
        plan.append((name, f, f"lesion:{f.tag}:{k}"))
        modelled.append(f)
    for name, f, key in plan:
        fx.adjust(name, f, patient, rng_for(case_id, seed, key, "adjust"))
    anatomy = build_anatomy(patient, rng_for(case_id, seed, "anatomy-detail"))
    for name, f, key in plan:
        fx.add(name, f, anatomy, rng_for(case_id, seed, key, "add"))
    finalize_vessels(anatomy)
    return anatomy, tuple(modelled), tuple(unmodelled)


def render_case(case_id: str, findings: Sequence[Finding], *, seed: int = 0, size: int = 256) -> RenderedCase:
    """Both views of one case; identical bytes for identical (case_id, findings, seed, size)."""
    from benchmark.data.phantom.anatomy import rng_for
    from benchmark.data.phantom.render import develop, grains, make_views, ray_sums

    anatomy, modelled, unmodelled = build_case(case_id, findings, seed=seed)
    grain = grains(anatomy, size, rng_for(case_id, seed, "texture"))
    images = {}
    for name, view in make_views(anatomy, size).items():
        sharp, soft = ray_sums(anatomy, view, name, grain[name])
        images[name] = develop(anatomy, name, sharp, soft, rng_for(case_id, seed, "noise", name))
    return RenderedCase(images["frontal"], images["lateral"], modelled, unmodelled)
