"""MeSH findings -> changes to the phantom patient (phase 1) and extra 3D solids (phase 2).

Each modelled finding maps to one handler. Phase 1 turns patient knobs before the anatomy is built
(heart size, domes, inflation, spine curves, aorta); phase 2 adds solids (fluid, opacities, nodules,
devices, fractures...) once the anatomy's geometry exists. Every finding draws its details from its own
random stream, so adding one finding never changes another finding's or the anatomy's draw.
"""

from __future__ import annotations

import numpy as np

from benchmark.data.phantom.anatomy import MU_BONE, MU_METAL, MU_SOFT, Anatomy, Patient, spine_center
from benchmark.data.phantom.geometry import SHARP, SOFT, Component, Ellipsoid, above, below, rotation
from benchmark.data.reports import Finding

SEVERITY = {None: 1.0, "borderline": 0.5, "mild": 0.75, "small": 0.85, "moderate": 1.25, "large": 1.65, "severe": 1.9}


def _has(f: Finding, *words: str) -> bool:
    quals = {*f.locations, *f.descriptors}
    return any(w in quals for w in words)


def _loc_text(f: Finding) -> str:
    return " ".join(f.locations)


def handler_name(f: Finding) -> str | None:
    """The handler that draws ``f``, or None when the phantom does not model it."""
    t = f.term.strip().lower()
    if f.is_normal:
        return None
    loc = _loc_text(f)
    if t in {"cardiomegaly", "heart failure"}:
        return t.replace(" ", "_")
    if t == "cardiac shadow":
        return "cardiomegaly" if (_has(f, "enlarged", "prominent") or f.severity) else None
    if t == "pericardial effusion":
        return "pericardial_effusion"
    if t in {"pleural effusion", "hemothorax"}:
        return "effusion"
    if t == "costophrenic angle":
        return "effusion" if _has(f, "blunted", "obscured") or not f.descriptors else None
    if t in {"pneumothorax", "hemopneumothorax", "hydropneumothorax"}:
        return "pneumothorax"
    if t in {
        "opacity",
        "density",
        "infiltrate",
        "airspace disease",
        "consolidation",
        "pneumonia",
        "tuberculosis",
        "bronchitis",
        "bronchiolitis",
    }:
        if _has(f, "interstitial", "reticular"):
            return "interstitial"
        if _has(f, "round") and t in {"opacity", "density"}:
            return "nodule"
        if "breast" in loc or "abdomen" in loc:
            return None
        return "airspace"
    if t in {"pulmonary edema", "pulmonary congestion"}:
        return "edema" if t == "pulmonary edema" else "congestion"
    if t == "markings":
        return "interstitial" if _has(f, "interstitial", "reticular") else "markings"
    if t in {"lung diseases, interstitial", "pulmonary fibrosis", "fibrosis", "sarcoidosis"}:
        return "interstitial"
    if t in {"pulmonary atelectasis", "volume loss"}:
        return "atelectasis"
    if t == "cicatrix":
        return "scar" if ("lung" in loc or "pleura" in loc or not loc) else None
    if t == "thickening":
        return "pleural_thickening" if ("pleura" in loc or not loc) else None
    if t in {"nodule", "mass"}:
        return "nodule"
    if t in {"granuloma", "calcified granuloma", "granulomatous disease"}:
        return "granuloma"
    if t == "calcinosis":
        if "aorta" in loc or "blood vessels" in loc:
            return "aorta_calcification"
        return "calcinosis"
    if t in {"lymph nodes", "lymph nodes"} or (t == "lung" and "hilum" in loc):
        return "hilar_nodes"
    if t == "lung":
        if _has(f, "hyperdistention"):
            return "hyperinflation"
        if _has(f, "hypoinflation"):
            return "hypoinflation"
        if _has(f, "interstitial"):
            return "interstitial"
        return None
    if t in {
        "emphysema",
        "pulmonary emphysema",
        "pulmonary disease, chronic obstructive",
        "lung, hyperlucent",
        "bullous emphysema",
        "cystic fibrosis",
    }:
        return "hyperinflation"
    if t == "diaphragm":
        if _has(f, "flattened"):
            return "flat_diaphragm"
        if _has(f, "elevated"):
            return "elevated_diaphragm"
        return None
    if t in {"diaphragmatic eventration"}:
        return "elevated_diaphragm"
    if t == "scoliosis":
        return "scoliosis"
    if t == "kyphosis":
        return "kyphosis"
    if t in {"spondylosis", "osteophyte", "arthritis", "hyperostosis, diffuse idiopathic skeletal"}:
        return "shoulder_arthritis" if "shoulder" in loc else "degenerative_spine"
    if t in {"thoracic vertebrae", "spine", "lumbar vertebrae", "cervical vertebrae"}:
        return "degenerative_spine" if _has(f, "degenerative") or not f.descriptors else None
    if t == "shoulder":
        return "shoulder_arthritis"
    if t in {"bone diseases, metabolic", "osteoporosis"}:
        return "osteopenia"
    if t in {"aorta", "aorta, thoracic", "aortic aneurysm"}:
        return "aorta"
    if t == "atherosclerosis":
        return "aorta_calcification"
    if t in {"catheters, indwelling"}:
        return "catheter"
    if t in {"tube, inserted"}:
        return "tube"
    if t in {"implanted medical device", "medical device"}:
        return "device"
    if t in {"surgical instruments", "sutures"}:
        return "surgical"
    if t == "stents":
        return "stent"
    if t == "foreign bodies":
        return "foreign_body"
    if t in {"fractures, bone", "ribs"}:
        return "fracture"
    if t == "deformity":
        if "ribs" in loc or "clavicle" in loc:
            return "fracture"
        if "vertebrae" in loc or "spine" in loc:
            return "vertebral_compression"
        return None
    if t in {"hernia, hiatal"}:
        return "hiatal_hernia"
    if t == "mediastinum":
        return "mediastinum" if _has(f, "prominent", "enlarged") or not f.descriptors else None
    if t == "epicardial fat":
        return "epicardial_fat"
    if t == "pneumoperitoneum":
        return "pneumoperitoneum"
    if t in {"subcutaneous emphysema", "subcutaneous  emphysema"}:
        return "subcutaneous_emphysema"
    if t == "nipple shadow":
        return "nipples"
    if t in {"pulmonary artery", "hypertension, pulmonary"}:
        return "pulmonary_hypertension"
    if t in {"blister", "cysts", "cavitation"}:
        return "bulla" if t != "cavitation" else "cavity"
    if t == "spinal fusion":
        return "spinal_fusion"
    return None


# ------------------------------------------------------------------------------------------ helpers


def _sides(f: Finding, rng: np.random.Generator, default_both: bool = False) -> list[int]:
    if f.laterality == "right":
        return [-1]
    if f.laterality == "left":
        return [1]
    if f.laterality == "bilateral" or default_both:
        return [-1, 1]
    if _has(f, "middle lobe"):
        return [-1]
    if _has(f, "lingula", "retrocardiac"):
        return [1]
    if _has(f, "multiple", "scattered", "diffuse"):
        return [-1, 1]
    return [-1 if rng.random() < 0.5 else 1]


def _lung(anat: Anatomy, side: int):
    return anat.lungs["right" if side < 0 else "left"]


def _zone(f: Finding, side: int):
    """(nx range, ny range, nz range) of the named lobe/zone in lung-normalised coordinates."""
    q = {*f.locations, *f.descriptors}
    if "retrocardiac" in q:
        return (-0.95, -0.55), (-0.6, 0.1), (0.05, 0.35)
    if "apex" in q:
        return (-0.2, 0.8), (-0.5, 0.5), (0.82, 0.95)
    if "upper lobe" in q:
        return (-0.3, 0.85), (-0.6, 0.5), (0.55, 0.88)
    if "middle lobe" in q or "lingula" in q:
        return (-0.4, 0.7), (0.2, 0.85), (0.12, 0.45)
    if "lower lobe" in q:
        return (-0.5, 0.85), (-0.85, 0.0), (0.04, 0.45)
    if "base" in q:
        return (-0.3, 0.9), (-0.7, 0.6), (0.02, 0.25)
    if "hilum" in q:
        return (-0.85, -0.45), (-0.3, 0.3), (0.35, 0.6)
    return (-0.4, 0.9), (-0.7, 0.7), (0.1, 0.85)


def _site(anat: Anatomy, f: Finding, side: int, rng: np.random.Generator, zone=None) -> np.ndarray:
    lung = _lung(anat, side)
    (x0, x1), (y0, y1), (z0, z1) = zone or _zone(f, side)
    pts = lung.point(rng.uniform(x0, x1, 16), rng.uniform(y0, y1, 16), rng.uniform(z0, z1, 16))
    ok = lung.is_air(pts)
    return pts[int(np.argmax(ok))] if ok.any() else pts[0]


def _sev(f: Finding) -> float:
    return SEVERITY.get(f.severity, 1.0)


def _lung_blob(anat: Anatomy, side: int, e: Ellipsoid, mu: float, layer: int = SOFT) -> None:
    """A density confined to the aerated lung of one side."""
    lung = _lung(anat, side)
    anat.components.append(
        Component(mu, [e, *lung.solids], [lung.dome, anat.heart] if side < 0 else [lung.dome, anat.heart], [], layer)
    )


def _random_rot(rng) -> np.ndarray:
    return (
        rotation("z", rng.uniform(0, np.pi))
        @ rotation("x", rng.uniform(-0.6, 0.6))
        @ rotation("y", rng.uniform(-0.6, 0.6))
    )


# ------------------------------------------------------------------------------------------ phase 1


def adjust(name: str, f: Finding, p: Patient, rng: np.random.Generator) -> None:
    s = _sev(f)
    if name in ("cardiomegaly", "heart_failure", "pericardial_effusion"):
        ranges = {
            "borderline": (0.505, 0.52),
            "mild": (0.53, 0.57),
            "small": (0.53, 0.57),
            "moderate": (0.60, 0.65),
            "large": (0.66, 0.71),
            "severe": (0.67, 0.72),
        }
        lo, hi = ranges.get(f.severity, (0.55, 0.60))
        p.ctr = max(p.ctr, rng.uniform(lo, hi))
        if name == "pericardial_effusion":
            p.heart_round = 1.0
        if name == "heart_failure":
            p.vessel_scale *= 1.2
            p.hilum_scale *= 1.2
    elif name == "hyperinflation":
        k = min(s, 1.7)
        p.dome_r -= 2.6 * k
        p.dome_l -= 2.6 * k
        p.dome_depth *= max(1 - 0.28 * k, 0.4)
        p.lung_mu *= max(1 - 0.45 * k, 0.35)
        p.barrel = max(p.barrel, 0.6 * k)
        p.vessel_scale *= 0.9
        p.ctr = min(p.ctr, 0.44)
    elif name == "flat_diaphragm":
        p.dome_r -= 1.6 * s
        p.dome_l -= 1.6 * s
        p.dome_depth *= 0.55
    elif name == "hypoinflation":
        k = min(s, 1.7)
        p.dome_r += 2.8 * k
        p.dome_l += 2.8 * k
        p.lung_mu *= 1 + 0.15 * k
    elif name == "elevated_diaphragm":
        for side in _sides(f, rng):
            if side < 0:
                p.dome_r += 3.2 * s
            else:
                p.dome_l += 3.2 * s
    elif name == "atelectasis":
        if _has(f, "base", "lower lobe") or not f.locations:
            for side in _sides(f, rng):
                if side < 0:
                    p.dome_r += 1.0 * s
                else:
                    p.dome_l += 1.0 * s
    elif name == "scoliosis":
        sign = {"right": -1, "left": 1}.get(f.laterality, 1 if rng.random() < 0.5 else -1)
        p.scoliosis = sign * rng.uniform(1.6, 2.6) * s
        p.scoliosis_low = "lumbar vertebrae" in f.locations
    elif name == "kyphosis":
        p.kyphosis = rng.uniform(1.8, 2.6) * s
    elif name == "degenerative_spine":
        p.degenerative = max(p.degenerative, s)
    elif name == "aorta":
        p.aorta_tortuous = max(p.aorta_tortuous, rng.uniform(0.8, 1.2) * s)
        p.knob = max(p.knob, 1.1 + 0.15 * s + (0.5 if f.term.lower() == "aortic aneurysm" else 0))
    elif name == "osteopenia":
        p.bone *= 0.7
    elif name in ("congestion", "edema"):
        p.vessel_scale *= 1.15 + 0.1 * s
        p.hilum_scale *= 1.2 + 0.1 * s
    elif name == "markings":
        p.vessel_scale *= 1.12 + 0.1 * s
        p.vessel_mu *= 1.3 + 0.15 * s
    elif name == "pulmonary_hypertension":
        p.hilum_scale *= 1.5
    elif name == "mediastinum":
        p.mediastinum = max(p.mediastinum, 1 + 0.7 * s)


# ------------------------------------------------------------------------------------------ phase 2


def add(name: str, f: Finding, anat: Anatomy, rng: np.random.Generator) -> None:
    fn = _ADDERS.get(name)
    if fn is not None:
        fn(f, anat, rng)


def _effusion(f, anat, rng, frac=None):
    p = anat.patient
    for side in _sides(f, rng):
        lung = _lung(anat, side)
        sev = f.severity
        if frac is None:
            level = {
                "borderline": -0.03,
                "mild": -0.02,
                "small": 0.0,
                None: 0.12,
                "moderate": 0.22,
                "large": 0.42,
                "severe": 0.55,
            }.get(sev, 0.12)
            if f.term.lower() == "costophrenic angle":
                level = -0.04
        else:
            level = frac
        level += rng.uniform(-0.02, 0.02)
        dome = lung.dome_top
        h = dome + level * (lung.apex - dome)
        rise = 2.0 + 5.0 * max(level, 0)
        c = lung.center
        inner = Ellipsoid.make(
            [c[0] - side * 0.9, c[1] + 1.3, h + rise], [lung.semi[0] * 0.97, lung.semi[1] * 0.93, rise]
        )
        anat.components.append(
            Component(MU_SOFT - p.lung_mu, [*lung.solids, below(h + rise)], [inner, lung.dome, anat.heart], [], SHARP)
        )


def _pneumothorax(f, anat, rng):
    p = anat.patient
    for side in _sides(f, rng):
        lung = _lung(anat, side)
        k = {
            "small": 0.9,
            "mild": 0.9,
            "borderline": 0.93,
            None: 0.86,
            "moderate": 0.78,
            "large": 0.66,
            "severe": 0.58,
        }.get(f.severity, 0.86)
        c = lung.center.copy()
        semi = np.array([lung.semi[0] * k, lung.semi[1] * (0.5 + 0.5 * k), lung.semi[2] * k])
        top = min(lung.apex, c[2] + lung.semi[2]) - 2.5 / k + 1.0
        cz = top - semi[2] * 0.8
        col = Ellipsoid.make([c[0] - side * lung.semi[0] * (1 - k) * 0.9, c[1], cz], [semi[0], semi[1], semi[2] * 0.8])
        inner = Ellipsoid.make(col.center, [semi[0] - 0.12, semi[1] - 0.12, semi[2] * 0.8 - 0.12])
        anat.components.append(Component(-p.lung_mu * 0.95, list(lung.solids), [col, lung.dome, anat.heart]))
        anat.components.append(Component(0.25, [col, *lung.solids], [inner]))
        anat.vessel_zones.append(Component(0.0, list(lung.solids), [col]))
        if f.term.lower() in {"hydropneumothorax", "hemopneumothorax"}:
            _effusion(Finding("Pleural Effusion", (), "right" if side < 0 else "left", "small"), anat, rng)


def _airspace(f, anat, rng):
    p = anat.patient
    s = _sev(f)
    t = f.term.lower()
    dens = {
        "density": 0.5,
        "infiltrate": 0.55,
        "opacity": 0.55,
        "airspace disease": 0.62,
        "consolidation": 0.8,
        "pneumonia": 0.72,
    }.get(t, 0.55) * (MU_SOFT - p.lung_mu)
    streaky = _has(f, "streaky", "patchy")
    n_sites = 2 if _has(f, "multiple", "multilobar", "diffuse", "scattered") else 1
    for side in _sides(f, rng):
        for _ in range(n_sites):
            centre = _site(anat, f, side, rng)
            n = int(rng.integers(4, 7))
            for _ in range(n):
                off = rng.normal(0, 1.6 * s, 3) * [1.0, 1.2, 0.8]
                r = rng.uniform(1.6, 2.8) * s * np.array([1.0, rng.uniform(0.8, 1.3), rng.uniform(0.7, 1.1)])
                if streaky:
                    r = r * [1.6, 1.0, 0.35]
                e = Ellipsoid.make(
                    centre + off, r, _random_rot(rng) if not streaky else rotation("y", rng.normal(0, 0.3))
                )
                _lung_blob(anat, side, e, dens * rng.uniform(0.6, 1.0))


def _edema(f, anat, rng, strength=1.0):
    p = anat.patient
    s = _sev(f)
    for side in (-1, 1):
        lung = _lung(anat, side)
        for _ in range(4):
            c = lung.hilum + [side * rng.uniform(1.5, 5.0), rng.uniform(-2, 2), rng.uniform(-4, 3)]
            e = Ellipsoid.make(c, rng.uniform(3.0, 4.5, 3) * [1.0, 1.3, 1.2])
            _lung_blob(anat, side, e, 0.13 * strength * s * (MU_SOFT - p.lung_mu))
        if strength > 0.5:  # Kerley B lines at the lateral bases
            for _ in range(6):
                q = lung.point(rng.uniform(0.85, 0.97), rng.uniform(-0.3, 0.5), rng.uniform(0.03, 0.25))
                anat.parts.tube(q - [side * 0.9, 0, 0], q + [side * 0.6, 0, 0], 0.07, 0.5)


def _interstitial(f, anat, rng):
    p = anat.patient
    s = _sev(f)
    sides = _sides(f, rng, default_both=not f.laterality)
    base = _has(f, "base") or not f.locations
    for side in sides:
        lung = _lung(anat, side)
        n = int(70 * s)
        nz = (
            rng.uniform(0.03, 0.6 if base else 0.9, n)
            if not _has(f, "upper lobe", "apex")
            else rng.uniform(0.5, 0.95, n)
        )
        pts = lung.point(rng.uniform(-0.3, 0.95, n), rng.uniform(-0.8, 0.8, n), nz)
        dirs = rng.normal(0, 1, (n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        ln = rng.uniform(0.6, 1.6, n)
        ok = lung.is_air(pts)
        for k in np.flatnonzero(ok):
            anat.parts.tube(pts[k] - dirs[k] * ln[k], pts[k] + dirs[k] * ln[k], 0.09, 1.1 * (MU_SOFT - p.lung_mu))
        for _ in range(2):
            c = _site(anat, f, side, rng, ((-0.2, 0.8), (-0.5, 0.5), (0.1, 0.4 if base else 0.7)))
            _lung_blob(anat, side, Ellipsoid.make(c, [4, 5, 4]), 0.12 * s * (MU_SOFT - p.lung_mu))


def _atelectasis(f, anat, rng):
    p = anat.patient
    s = _sev(f)
    for side in _sides(f, rng):
        if not f.locations or _has(f, "base", "lower lobe"):
            zone = ((0.0, 0.7), (-0.4, 0.3), (0.08, 0.3))
        else:
            zone = None
        for k in range(1 if s < 1 else 2):
            c = _site(anat, f, side, rng, zone)
            R = rotation("y", side * rng.uniform(-0.25, 0.1)) @ rotation("x", rng.uniform(-0.2, 0.2))
            e = Ellipsoid.make(c, [rng.uniform(3.0, 4.5) * s, rng.uniform(2.5, 4.0), rng.uniform(0.35, 0.6)], R)
            _lung_blob(anat, side, e, 0.95 * (MU_SOFT - p.lung_mu), SHARP)


def _scar(f, anat, rng):
    p = anat.patient
    for side in _sides(f, rng):
        lung = _lung(anat, side)
        if _has(f, "apex") or "pleura" in f.locations:
            _apical_cap(anat, lung, 0.6 + 0.3 * rng.random())
            if "pleura" in f.locations:
                continue
        for _ in range(3):
            c = _site(anat, f, side, rng)
            R = _random_rot(rng)
            e = Ellipsoid.make(c, [rng.uniform(1.5, 3.0), 0.18, rng.uniform(0.6, 1.0)], R)
            _lung_blob(anat, side, e, 1.4 * (MU_SOFT - p.lung_mu), SHARP)


def _apical_cap(anat, lung, thick):
    mu = MU_SOFT - anat.patient.lung_mu
    down = [np.array([0, 0, -thick])]
    shifted = (Ellipsoid.make(lung.center + down[0], lung.semi), Ellipsoid.make(lung.center + down[0], lung.cap_semi))
    anat.components.append(Component(mu, [*lung.solids, above(lung.apex - 6)], [shifted]))


def _pleural_thickening(f, anat, rng):
    mu = MU_SOFT - anat.patient.lung_mu
    for side in _sides(f, rng):
        lung = _lung(anat, side)
        if _has(f, "apex") or rng.random() < 0.5:
            _apical_cap(anat, lung, 0.5 + 0.4 * rng.random())
        else:
            z0 = lung.dome_top + rng.uniform(2, 8)
            narrow = (
                Ellipsoid.make(lung.center, lung.semi * [0.93, 1.0, 1.0]),
                Ellipsoid.make(lung.center, lung.cap_semi * [0.93, 1, 1]),
            )
            anat.components.append(Component(mu, [*lung.solids, above(z0), below(z0 + 8)], [narrow]))


def _nodule(f, anat, rng):
    p = anat.patient
    mass = f.term.lower() == "mass"
    count = int(rng.integers(3, 6)) if _has(f, "multiple", "scattered") else 1
    for side in _sides(f, rng):
        for _ in range(count):
            c = _site(anat, f, side, rng)
            r = rng.uniform(1.6, 2.6) if mass else rng.uniform(0.55, 1.1) * (1.2 if f.severity == "large" else 1)
            e = Ellipsoid.make(c, r * rng.uniform(0.85, 1.15, 3), _random_rot(rng))
            anat.parts.blob(e, (MU_SOFT - p.lung_mu) * 1.05)


def _granuloma(f, anat, rng):
    multi = _has(f, "multiple", "scattered") or f.term.lower() == "granulomatous disease"
    calcified = f.term.lower() != "granuloma" or rng.random() < 0.6
    count = int(rng.integers(3, 7)) if multi else 1
    for side in _sides(f, rng):
        for _ in range(count):
            c = _site(anat, f, side, rng)
            if calcified:
                anat.parts.blob(Ellipsoid.make(c, rng.uniform(0.22, 0.42, 3)), 1.6)
            else:
                anat.parts.blob(Ellipsoid.make(c, rng.uniform(0.4, 0.7, 3)), 0.35)
    if f.term.lower() == "granulomatous disease":
        _hilar_calcified(anat, rng, [-1 if rng.random() < 0.5 else 1])


def _hilar_calcified(anat, rng, sides, mediastinal=False):
    for side in sides:
        lung = _lung(anat, side)
        base = anat.carina + [side * 1.6, 0.3, 1.5] if mediastinal else lung.hilum + [side * 0.6, 0.2, 0]
        for _ in range(int(rng.integers(2, 4))):
            c = base + rng.normal(0, 0.5, 3)
            anat.parts.blob(Ellipsoid.make(c, rng.uniform(0.3, 0.55, 3), _random_rot(rng)), 1.0)


def _calcinosis(f, anat, rng):
    loc = _loc_text(f)
    if (
        "hilum" in loc
        or "lymph nodes" in loc
        or "mediastinum" in loc
        or "paratracheal" in loc
        or "trachea" in loc
        or not f.locations
    ):
        mediastinal = ("mediastinum" in loc or "paratracheal" in loc or "trachea" in loc) and "hilum" not in loc
        if not f.locations:
            mediastinal = False
        sides = (
            _sides(f, rng)
            if not mediastinal
            else [-1 if f.laterality == "right" else (1 if f.laterality == "left" else -1)]
        )
        _hilar_calcified(anat, rng, sides, mediastinal)
    else:
        _granuloma(Finding("Calcified Granuloma", f.locations, f.laterality, f.severity, f.descriptors), anat, rng)


def _hilar_nodes(f, anat, rng):
    p = anat.patient
    for side in _sides(f, rng, default_both=True):
        lung = _lung(anat, side)
        for _ in range(3):
            c = lung.hilum + [side * rng.uniform(0.8, 2.0), rng.uniform(-1, 1), rng.uniform(-2, 2)]
            _lung_blob(anat, side, Ellipsoid.make(c, rng.uniform(1.2, 1.9, 3)), MU_SOFT - p.lung_mu, SHARP)


def _aorta_calcification(f, anat, rng):
    knob = anat.notes["knob"]
    semi = np.sqrt(1.0 / np.diag(knob.M))
    t = np.linspace(-0.3, 1.7, 12) + rng.normal(0, 0.03, 12)
    pts = knob.center + np.stack(
        [semi[0] * np.cos(t) * 0.97, rng.normal(0, 0.2, 12) - 0.5, semi[2] * np.sin(t) * 0.97], axis=1
    )
    anat.parts.polyline(pts, 0.12, 2.2)


def _catheter(f, anat, rng):
    p = anat.patient
    s = {"right": -1, "left": 1}.get(f.laterality, -1 if rng.random() < 0.7 else 1)
    nz = anat.notes["notch_z"]
    W = p.half_width
    tip_z = anat.carina[2] - rng.uniform(3.0, 5.5)
    pts = [
        [s * (W + 2), 0.5, nz - 1.5],
        [s * (W - 3), 2.0, nz - 0.5],
        [s * 7.0, 3.0, nz - 0.8],
        [s * 3.5, 2.5, nz - 1.2],
        [-1.9, 1.8, nz - 3.5],
        [-1.7, 1.6, tip_z],
    ]
    anat.parts.polyline(np.array(pts) + rng.normal(0, 0.3, (6, 3)) * [1, 1, 1], 0.13, 1.6)


def _tube(f, anat, rng):
    p = anat.patient
    loc = _loc_text(f)
    if "abdomen" in loc or "stomach" in loc or "esophagus" in loc:
        ys = anat.spine[8][1][1] + 2.5
        pts = [
            [0.4, ys + 1.0, p.fov_top + 2],
            [0.6, ys, anat.carina[2]],
            [1.6, ys - 0.2, p.dome_l - 0.5],
            [_lung(anat, 1).center[0] + 1, 0.5, p.dome_l - 3.5],
        ]
        anat.parts.polyline(pts, 0.22, 0.5)
        anat.parts.polyline(pts, 0.06, 2.0)
        return
    tip = anat.carina + [0, 0.4, rng.uniform(3.0, 5.0)]
    pts = [[0, 2.2, p.fov_top + 2], [0.05, 1.4, anat.notes["notch_z"]], tip]
    anat.parts.polyline(pts, 0.45, 0.35, inner=0.35, mu_inner=-0.35)
    anat.parts.polyline(np.array(pts) + [0.3, 0, 0], 0.1, 3.0)


def _pacemaker(anat, rng, s):
    p = anat.patient
    nz = anat.notes["notch_z"]
    gen = np.array([s * rng.uniform(8.0, 10.5), p.half_depth - 1.4, nz - rng.uniform(1.5, 3.0)])
    R = rotation("z", s * 0.3) @ rotation("y", rng.uniform(-0.4, 0.4))
    anat.parts.blob(Ellipsoid.make(gen, [2.4, 0.5, 2.0], R), MU_METAL)
    anat.parts.blob(Ellipsoid.make(gen + [0, 0, -0.3], [1.6, 0.3, 1.2], R), -1.5)
    h = anat.heart
    Minv = np.linalg.inv(h.M)
    axis = Minv @ np.array([1.0, 0.2, -0.6])
    apex = h.center + 0.75 * axis / np.sqrt(axis @ h.M @ axis)
    ra = h.center + [-3.0, 0.0, 1.5]
    entry = [s * 6.0, 2.5, nz - 1.0]
    svc = [-1.8, 1.6, anat.carina[2] - 3.0]
    for tip, off in ((apex, 0.0), (ra, 0.5)):
        pts = np.array(
            [gen + [-s * 1.5, 0, 1.0], entry, [s * 2.5, 2.2, nz - 1.8], svc, [-2.0, 1.8, h.center[2] + 2.0], tip]
        ) + [0, off, 0]
        anat.parts.polyline(pts, 0.08, 2.0)


def _device(f, anat, rng):
    loc = _loc_text(f)
    if "aortic valve" in loc or "mitral valve" in loc:
        c = anat.heart.center + [-0.8, 0.5, 3.2]
        t = np.linspace(0, 2 * np.pi, 13)
        ring = c + 1.2 * np.stack([np.cos(t), 0.6 * np.sin(t), 0.5 * np.sin(t)], axis=1)
        anat.parts.polyline(ring, 0.13, 2.5)
        return
    if "humerus" in loc or "shoulder" in loc:
        s = 1 if f.laterality == "left" else -1
        W = anat.patient.half_width
        head = np.array([s * (W + 1.2), -1.0, anat.notes["notch_z"] + 1.2])
        anat.parts.blob(Ellipsoid.make(head, [2.0, 2.0, 2.2]), 1.8)
        anat.parts.tube(head, head + [s * 0.6, 0, -8], 0.5, 2.5)
        return
    s = {"right": -1, "left": 1}.get(f.laterality, 1)
    _pacemaker(anat, rng, s)


def _sternotomy(anat, rng):
    st = anat.sternum
    for k in range(int(rng.integers(5, 8))):
        c = st[0] + (st[-1] - st[0]) * (0.08 + 0.13 * k) + rng.normal(0, 0.1, 3)
        t = np.linspace(0, 2 * np.pi, 11)
        R = rotation("x", rng.uniform(0.6, 1.0)) @ rotation("z", rng.normal(0, 0.15))
        loop = c + (np.stack([1.1 * np.cos(t), 0.45 * np.sin(t), 0.0 * t], axis=1) @ R.T)
        anat.parts.polyline(loop, 0.07, MU_METAL * 1.4)
        anat.parts.blob(Ellipsoid.make(c + [0, 0.6, 0], [0.2, 0.2, 0.45]), MU_METAL)


def _clips(anat, rng, centre, n, spread=1.5):
    for _ in range(n):
        c = centre + rng.normal(0, spread, 3)
        d = rng.normal(0, 1, 3)
        d /= np.linalg.norm(d)
        anat.parts.tube(c - 0.5 * d, c + 0.5 * d, 0.12, MU_METAL * 2.5)


def _surgical(f, anat, rng):
    p = anat.patient
    loc = _loc_text(f)
    if "abdomen" in loc:
        s = {"right": -1, "left": 1}.get(f.laterality, -1)
        _clips(anat, rng, np.array([s * 5.5, 1.0, min(p.dome_r, p.dome_l) - 5.0]), int(rng.integers(3, 6)))
    elif "hilum" in loc or "lung" in loc:
        s = _sides(f, rng)[0]
        _clips(anat, rng, _lung(anat, s).hilum + [s * 2, 0, 0.5], int(rng.integers(3, 6)), 1.0)
    elif "breast" in loc:
        s = _sides(f, rng)[0]
        _clips(anat, rng, np.array([s * 7.0, p.half_depth + 1.0, p.dome_r + 5.0]), int(rng.integers(2, 5)))
    elif f.laterality in ("right", "left") and "mediastinum" not in loc:
        s = -1 if f.laterality == "right" else 1
        _clips(
            anat,
            rng,
            np.array([s * (p.half_width - 3), 0.0, anat.notes["notch_z"] - 5.0]),
            int(rng.integers(3, 6)),
            2.0,
        )
    else:
        _sternotomy(anat, rng)
        if "mediastinum" in loc:
            _clips(anat, rng, anat.heart.center + [0, 3.0, 2.0], int(rng.integers(2, 5)), 2.0)


def _stent(f, anat, rng):
    h = anat.heart.center
    c = h + [rng.uniform(0.5, 2.5), 3.0, rng.uniform(0.5, 2.5)]
    d = np.array([0.3, 0.2, -1.0])
    d /= np.linalg.norm(d)
    anat.parts.tube(c - 1.3 * d, c + 1.3 * d, 0.25, 2.0, inner=0.17, mu_inner=-1.5)


def _foreign_body(f, anat, rng):
    s = _sides(f, rng)[0]
    loc = _loc_text(f)
    if "abdomen" in loc:
        c = np.array([s * 4.0, 0.0, anat.patient.dome_l - 6.0])
    else:
        c = _site(anat, f, s, rng)
    anat.parts.blob(Ellipsoid.make(c, rng.uniform(0.25, 0.6, 3), _random_rot(rng)), MU_METAL * 1.5)


def _cancel_tube(anat, a, b, r_out, mu_out, r_in, mu_in):
    anat.parts.tube(a, b, r_out, -mu_out)
    anat.parts.tube(a, b, r_in, -mu_in)


def _fracture(f, anat, rng):
    p = anat.patient
    loc = _loc_text(f)
    bone = MU_BONE * p.bone
    healed = _has(f, "healed") or f.term.lower() == "deformity"
    if "vertebrae" in loc or "spine" in loc:
        _vertebral_compression(f, anat, rng)
        return
    if "clavicle" in loc or "humerus" in loc or "sternum" in loc:
        s = _sides(f, rng)[0]
        W, nz = p.half_width, anat.notes["notch_z"]
        if "clavicle" in loc:
            a, b = np.array([s * 8.0, p.half_depth - 2.5, nz + 0.9]), np.array([s * 8.6, p.half_depth - 2.8, nz + 1.0])
            _cancel_tube(anat, a, b, 0.62, bone * 0.9, 0.37, -0.4 * bone)
        elif "humerus" in loc:
            head = np.array([s * (W + 1.2), -1.0, nz + 1.2])
            a, b = head + [s * 0.35, 0, -4.0], head + [s * 0.4, 0, -4.6]
            _cancel_tube(anat, a, b, 1.12, 0.5 * bone, 0.0, 0.0)
        else:
            st = anat.sternum
            a, b = st[3] + [0, 0, 0.3], st[3] - [0, 0, 0.3]
            _cancel_tube(anat, a, b, 0.77, 0.45 * bone, 0.5, -0.25 * bone)
        if healed:
            anat.parts.blob(Ellipsoid.make(0.5 * (a + b), [0.9, 0.9, 0.9]), 0.35 * bone)
        return
    n = int(rng.integers(2, 4)) if _has(f, "multiple") else 1
    for side in _sides(f, rng):
        for k in rng.choice(np.arange(4, 10), n, replace=False):
            pts = anat.ribs[("right" if side < 0 else "left", int(k))]
            j = int(rng.integers(3, len(pts) - 3))
            a, b = pts[j], pts[j + 1]
            m, u = 0.5 * (a + b), (b - a) / np.linalg.norm(b - a)
            nseg = len(pts) - 1
            fade = np.linspace(0.72, 0.45, nseg)[j]
            rr = 0.36 + 0.012 * min(int(k), 8)
            g0, g1 = m - 0.5 * u, m + 0.5 * u
            _cancel_tube(anat, g0, g1, rr, bone * fade, rr * 0.6, -0.55 * bone * fade)
            if healed:
                anat.parts.blob(Ellipsoid.make(m, [1.1, 1.0, 0.9]), 0.55 * bone)
            else:
                anat.parts.tube(g1, g1 + 1.0 * u + [0, 0, -0.35], rr, bone * fade * 0.9)
                anat.parts.tube(g1 - 0.0 * u, g1 + 1.0 * u, rr, -bone * fade * 0.9)


def _vertebral_compression(f, anat, rng):
    bone = MU_BONE * anat.patient.bone
    idx = [i for i, s in enumerate(anat.spine) if s[0] in {f"T{k}" for k in range(6, 13)}]
    if "lumbar vertebrae" in f.locations:
        idx = [i for i, s in enumerate(anat.spine) if s[0].startswith("L")]
    n = int(rng.integers(2, 4)) if _has(f, "multiple") else 1
    for i in rng.choice(idx, min(n, len(idx)), replace=False):
        name, c, h, r = anat.spine[int(i)]
        top = c + [0, 0, h / 2 - 0.2]
        cut = top - [0, 0, 0.4 * h]
        _cancel_tube(anat, cut, top, r, 0.36 * bone, r - 0.2, -0.16 * bone)
        anat.parts.tube(cut, cut + [0, 0, 0.35], r, 0.5 * bone)


def _degenerative(f, anat, rng):
    p = anat.patient
    bone = MU_BONE * p.bone
    s = _sev(f)
    loc = _loc_text(f)
    if "lumbar" in loc:
        levels = [x for x in anat.spine if x[0].startswith("L")]
    elif "cervical" in loc:
        levels = [x for x in anat.spine if x[0].startswith("C")]
    else:
        levels = [x for x in anat.spine if x[0] in {f"T{k}" for k in range(3, 13)}]
    n = max(2, int(len(levels) * min(0.35 + 0.3 * s, 1.0)))
    pick = rng.choice(len(levels), min(n, len(levels)), replace=False)
    dish = "hyperostosis" in f.term.lower()
    for i in pick:
        name, c, h, r = levels[int(i)]
        for end in (-1, 1):
            ez = c[2] + end * (h / 2 - 0.25)
            anat.parts.tube(
                np.array([c[0], c[1], ez - 0.12]), np.array([c[0], c[1], ez + 0.12]), r - 0.1, 0.55 * bone
            )  # endplate sclerosis
            for ang in rng.uniform(-1.3, 1.3, 2) + np.pi / 2:  # anterior / lateral spurs
                d = np.array([np.cos(ang) * (1 if rng.random() < 0.5 else -1), np.sin(ang), 0.0])
                base = np.array([c[0], c[1], ez]) + d * (r - 0.1)
                tip = base + d * rng.uniform(0.4, 0.8) * min(s, 1.4) + [0, 0, end * rng.uniform(0.2, 0.5)]
                anat.parts.tube(base, tip, rng.uniform(0.18, 0.28), 0.8 * bone)
    if dish:
        pts = [x[1] + [0.6, x[3] + 0.2, 0] for x in levels]
        anat.parts.polyline(pts, 0.35, 0.7 * bone)


def _shoulder(f, anat, rng):
    bone = MU_BONE * anat.patient.bone
    W, nz = anat.patient.half_width, anat.notes["notch_z"]
    for s in _sides(f, rng):
        head = np.array([s * (W + 1.2), -1.0, nz + 1.2])
        anat.parts.blob(Ellipsoid.make(head + [-s * 1.9, 0, 0.4], [0.35, 1.4, 1.4]), 0.9 * bone)
        anat.parts.tube(head + [0, 0, -2.3], head + [s * 0.5, 0, -3.1], 0.35, 0.8 * bone)


def _spinal_fusion(f, anat, rng):
    loc = _loc_text(f)
    if "cervical" in loc:
        levels = [x for x in anat.spine if x[0].startswith("C")]
        for name, c, h, r in levels:
            anat.parts.blob(Ellipsoid.make(c + [0, r + 0.2, 0], [1.2, 0.15, h * 0.5]), MU_METAL)
        return
    names = [x for x in anat.spine if (x[0].startswith("L") if "lumbar" in loc else x[0].startswith("T"))]
    start = int(rng.integers(0, max(len(names) - 4, 1)))
    chosen = names[start : start + 4]
    for s in (-1, 1):
        pts = [c + [s * 1.6, -r - 1.6, 0] for _, c, h, r in chosen]
        anat.parts.polyline(pts, 0.3, MU_METAL)
        for _, c, h, r in chosen:
            anat.parts.tube(c + [s * 1.6, -r - 1.6, 0], c + [s * 0.5, 0.3, 0], 0.25, MU_METAL * 0.8)


def _hiatal_hernia(f, anat, rng):
    p = anat.patient
    s = _sev(f)
    r = 2.6 * min(s, 1.5) + rng.uniform(-0.3, 0.3)
    spine_y = spine_center(p, p.dome_l + 3)[1]
    c = np.array([0.8, spine_y + 4.6, p.dome_l + 0.6 * r])
    e = Ellipsoid.make(c, [r * 1.1, r * 0.9, r])
    for side in (-1, 1):
        lg = _lung(anat, side)
        anat.components.append(Component(MU_SOFT - p.lung_mu, [e, *lg.solids], [lg.dome, anat.heart]))
    inner = Ellipsoid.make(c, [r * 0.9, r * 0.7, r * 0.85])
    anat.components.append(Component(-MU_SOFT * 0.9, [inner, above(c[2] + rng.uniform(-0.2, 0.3) * r)]))


def _epicardial_fat(f, anat, rng):
    p = anat.patient
    lung = anat.lungs["left"]
    h = anat.heart
    inv = np.linalg.inv(h.M)
    c = h.center + [np.sqrt(inv[0, 0]) * 0.8, 1.0, -np.sqrt(inv[2, 2]) * 0.5]
    e = Ellipsoid.make(c, [2.8, 3.0, 2.2])
    anat.components.append(Component(0.85 * (MU_SOFT - p.lung_mu), [e, *lung.solids], [lung.dome, h]))


def _pneumoperitoneum(f, anat, rng):
    for lung in anat.lungs.values():
        d = lung.dome
        lower = Ellipsoid.make(lung.dome_center - [0, 0, 0.8], lung.dome_semi * [0.97, 0.97, 1.0])
        anat.components.append(Component(-MU_SOFT * 0.9, [d, above(lung.dome_top - 3.0)], [lower]))


def _subcutaneous(f, anat, rng):
    p = anat.patient
    for side in _sides(f, rng, default_both=True):
        for _ in range(6):
            c = np.array(
                [
                    side * (p.half_width - rng.uniform(0.5, 1.2)),
                    rng.uniform(-5, 5),
                    rng.uniform(p.dome_r, anat.notes["notch_z"]),
                ]
            )
            e = Ellipsoid.make(c, [0.25, rng.uniform(1, 3), rng.uniform(1.5, 3.5)], rotation("y", rng.normal(0, 0.4)))
            anat.components.append(Component(-MU_SOFT * 0.9, [e, anat.notes["trunk"]]))


def _nipples(f, anat, rng):
    p = anat.patient
    for side in _sides(f, rng, default_both=True):
        c = np.array(
            [
                side * (p.half_width - p.wall) * 0.5,
                p.half_depth + 0.3 + 1.1 * p.breast,
                p.dome_r + 3.0 + rng.uniform(-1, 1),
            ]
        )
        anat.parts.blob(Ellipsoid.make(c, [0.8, 0.7, 0.8]), MU_SOFT * 1.3)


def _bulla(f, anat, rng):
    p = anat.patient
    for side in _sides(f, rng):
        lung = _lung(anat, side)
        c = _site(anat, f, side, rng, ((0.0, 0.7), (-0.5, 0.5), (0.6, 0.9)))
        r = rng.uniform(2.0, 3.5)
        e = Ellipsoid.make(c, [r, r, r])
        anat.components.append(Component(-p.lung_mu, [e, *lung.solids]))
        anat.components.append(Component(0.2, [e, *lung.solids], [e.scaled(0.96)]))
        anat.vessel_zones.append(e)


def _cavity(f, anat, rng):
    p = anat.patient
    for side in _sides(f, rng):
        lung = _lung(anat, side)
        c = _site(anat, f, side, rng, ((0.0, 0.7), (-0.5, 0.5), (0.55, 0.9)))
        r = rng.uniform(1.5, 2.5)
        e = Ellipsoid.make(c, [r, r, r])
        anat.components.append(Component(MU_SOFT - p.lung_mu, [e, *lung.solids], [e.scaled(0.6)]))
        anat.components.append(Component(-p.lung_mu, [e.scaled(0.6)]))


def _bullous(f, anat, rng):
    if f.term.lower() == "bullous emphysema":
        _bulla(f, anat, rng)


_ADDERS = {
    "effusion": _effusion,
    "pneumothorax": _pneumothorax,
    "airspace": _airspace,
    "edema": lambda f, a, r: _edema(f, a, r, 1.0),
    "congestion": lambda f, a, r: _edema(f, a, r, 0.45),
    "heart_failure": lambda f, a, r: _edema(f, a, r, 0.45),
    "interstitial": _interstitial,
    "atelectasis": _atelectasis,
    "scar": _scar,
    "pleural_thickening": _pleural_thickening,
    "nodule": _nodule,
    "granuloma": _granuloma,
    "calcinosis": _calcinosis,
    "hilar_nodes": _hilar_nodes,
    "aorta_calcification": _aorta_calcification,
    "catheter": _catheter,
    "tube": _tube,
    "device": _device,
    "surgical": _surgical,
    "stent": _stent,
    "foreign_body": _foreign_body,
    "fracture": _fracture,
    "vertebral_compression": _vertebral_compression,
    "degenerative_spine": _degenerative,
    "shoulder_arthritis": _shoulder,
    "spinal_fusion": _spinal_fusion,
    "hiatal_hernia": _hiatal_hernia,
    "epicardial_fat": _epicardial_fat,
    "pneumoperitoneum": _pneumoperitoneum,
    "subcutaneous_emphysema": _subcutaneous,
    "nipples": _nipples,
    "bulla": _bulla,
    "cavity": _cavity,
    "hyperinflation": _bullous,
}
