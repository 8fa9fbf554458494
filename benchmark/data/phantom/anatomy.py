"""The phantom patient: per-case anatomical parameters and the 3D solids they build.

Patient coordinates in cm: x = patient's left, y = anterior, z = superior; z = 0 is about the level of a
normal right hemidiaphragm dome, y = 0 the middle of the chest's depth.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from benchmark.data.phantom.geometry import (
    Component,
    Ellipsoid,
    Parts,
    above,
    below,
    frame,
    rotation,
)

MU_SOFT = 0.20  # soft tissue / water, per cm (diagnostic energies)
MU_LUNG = 0.045  # aerated lung
MU_BONE = 0.48  # cortical-ish bone, as drawn in tubes
MU_METAL = 3.0


def streams(case_id: str, seed: int) -> np.random.SeedSequence:
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return np.random.SeedSequence(int.from_bytes(digest[:16], "little"))


def rng_for(case_id: str, seed: int, *key: str) -> np.random.Generator:
    """An independent generator for one purpose ("anatomy", "noise", "lesion:<tag>:<k>", ...)."""
    digest = hashlib.sha256(f"{seed}:{case_id}".encode() + b"\0" + "\0".join(key).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


@dataclasses.dataclass
class Patient:
    """Everything that varies between normal patients, plus the knobs findings turn."""

    female: bool
    half_width: float  # trunk half-width W (cm)
    half_depth: float  # trunk half-depth D
    wall: float  # chest wall thickness
    apex_z: float  # lung apex height
    dome_r: float  # right hemidiaphragm dome height
    dome_l: float
    dome_depth: float  # dome curvature (smaller: flatter)
    ctr: float  # cardiothoracic ratio target
    heart_round: float  # 0 = normal shape, 1 = globular
    rib_step: float  # vertebral height + disc (rib spacing)
    yaw: float  # posture (radians)
    tilt: float
    roll: float
    lung_mu: float  # attenuation of aerated lung
    breast: float  # breast radius (0 = none)
    exposure: float  # window centre shift
    contrast: float  # window width factor
    noise: float  # quantum noise level
    fov_top: float  # z of the image's top row
    fov_h: float  # film height (cm); both views are framed from the patient's build, never from findings
    frame_x: float  # frontal film centre (x, cm): positioning error
    frame_w: float  # frontal film half-width (cm): the chest fills it edge to edge
    frame_y: float  # lateral film centre (y, cm)
    frame_d: float  # lateral film half-width (cm): the chest's depth fills it
    arm_out: float  # PA: arms hang down and out by this angle (rad); lateral: raised out of the field
    arm_r: float  # arm soft-tissue radius (cm)
    texture: float  # lung parenchymal texture strength
    marker: int  # 0: no side marker on the film; 1, 2: marker in the upper / lower outer corner
    scoliosis: float = 0.0  # lateral deviation amplitude (cm, sign = convex side; + = patient's left)
    scoliosis_low: bool = False
    kyphosis: float = 0.0  # extra thoracic kyphosis (cm)
    knob: float = 1.0  # aortic knob size factor
    aorta_tortuous: float = 0.0
    bone: float = 1.0  # bone density factor
    vessel_scale: float = 1.0
    vessel_mu: float = 1.0
    hilum_scale: float = 1.0
    mediastinum: float = 1.0
    barrel: float = 0.0  # AP widening of the chest (hyperinflation)
    degenerative: float = 0.0
    ref_lung_mu: float = MU_LUNG  # the anatomy's own lung attenuation (the film window ignores findings)


def sample_patient(rng: np.random.Generator) -> Patient:
    u = rng.uniform
    female = bool(rng.random() < 0.5)
    size = u(0.9, 1.1)  # build: scales width, depth and height together, then each varies on its own
    W = size * u(14.0, 16.5) - (0.8 if female else 0.0)
    D = size * u(9.8, 12.2)
    insp = u(-2.0, 1.6)  # dome height: inspiration varies more between patients than between their two films
    apex = 24.5 + 2.5 * (size - 1) + u(-1.0, 1.0)
    dome_depth = u(5.5, 7.0)
    # vertical framing varies from film to film (both views of one patient share it): where the apices and
    # domes fall on the film is part of what tells one patient from another
    fov_top = apex + u(1.0, 8.0)
    fov_h = fov_top - (insp - 1.5 - dome_depth - u(0.0, 7.0))
    p = Patient(
        female=female,
        half_width=W,
        half_depth=D,
        wall=u(1.3, 4.0),  # habitus: thin to obese; both views see the same soft tissue
        apex_z=apex,
        dome_r=insp,
        dome_l=insp - u(1.0, 2.0),
        dome_depth=dome_depth,
        ctr=u(0.38, 0.49),  # normal hearts only: the findings set 0.505 and above
        heart_round=u(0.0, 0.3),
        rib_step=u(2.3, 2.55) * (0.9 + 0.1 * size),
        yaw=np.radians(u(-4, 4)),
        tilt=np.radians(u(-3, 3)),
        roll=np.radians(u(-2.0, 2.0)),
        lung_mu=MU_LUNG * u(0.85, 1.15),
        breast=u(3.0, 7.0) if female and rng.random() < 0.8 else 0.0,
        exposure=u(-0.2, 0.2),
        contrast=u(0.85, 1.15),
        noise=u(0.6, 1.4),
        fov_top=fov_top,
        fov_h=fov_h,
        frame_x=u(-1.5, 1.5),
        frame_w=W + u(-1.8, 0.2),
        frame_y=0.0,
        frame_d=0.0,
        arm_out=u(0.02, 0.2),
        arm_r=size * u(3.4, 4.6),
        texture=u(0.7, 1.3),
        marker=int(rng.choice([0, 0, 0, 0, 0, 0, 1, 2])),
    )
    # the lateral film: the sternum always in, the back's skin at or just beyond the film's edge
    front, back = D + u(0.0, 0.8), -D + u(0.3, 1.8)
    p.frame_y, p.frame_d = (front + back) / 2, (front - back) / 2
    p.ref_lung_mu = p.lung_mu
    return p


def _ellipse_top(e_center, semi, x, y):
    """Height of the top surface of an axis-aligned ellipsoid above (x, y), -inf outside."""
    t = 1 - ((x - e_center[0]) / semi[0]) ** 2 - ((y - e_center[1]) / semi[1]) ** 2
    return np.where(t > 0, e_center[2] + semi[2] * np.sqrt(np.maximum(t, 0)), -np.inf)


@dataclasses.dataclass
class Lung:
    side: int  # -1 right, +1 left (sign of x)
    center: np.ndarray
    semi: np.ndarray
    floor: float
    dome_center: np.ndarray
    dome_semi: np.ndarray
    hilum: np.ndarray
    carve: list  # solids that are not lung (heart, mediastinum, aorta, dome)
    apex: float = 24.0

    @property
    def ellipsoid(self) -> Ellipsoid:
        return Ellipsoid.make(self.center, self.semi)

    @property
    def cap_semi(self) -> np.ndarray:
        return np.array([1.7 * self.semi[0], 1.45 * self.semi[1], self.apex - self.center[2]])

    @property
    def cap(self) -> Ellipsoid:
        """Rounds the apex: the lung is ellipsoid ∩ cap ∩ above(floor)."""
        return Ellipsoid.make(self.center, self.cap_semi)

    @property
    def solids(self) -> list:
        return [self.ellipsoid, self.cap, above(self.floor)]

    @property
    def dome(self) -> Ellipsoid:
        return Ellipsoid.make(self.dome_center, self.dome_semi)

    @property
    def dome_top(self) -> float:
        return float(self.dome_center[2] + self.dome_semi[2])

    def dome_height(self, x, y):
        return _ellipse_top(self.dome_center, self.dome_semi, x, y)

    def section(self, z: float) -> float:
        """Fraction of the widest cross-section the lung keeps at height z."""
        t1 = 1 - ((z - self.center[2]) / self.semi[2]) ** 2
        t2 = 1 - ((z - self.center[2]) / self.cap_semi[2]) ** 2
        return float(np.sqrt(max(min(t1, 1.7**2 * t2), 0.0)))

    def top_height(self, x, y):
        return np.minimum(_ellipse_top(self.center, self.semi, x, y), _ellipse_top(self.center, self.cap_semi, x, y))

    def point(self, nx, ny, nz) -> np.ndarray:
        """Lung-normalised coordinates -> patient coordinates. nx: medial (-1) .. lateral (+1),
        ny: posterior (-1) .. anterior (+1), nz: base (0) .. apex (1)."""
        nx, ny, nz = np.broadcast_arrays(*(np.asarray(v, float) for v in (nx, ny, nz)))
        x = self.center[0] + self.side * nx * self.semi[0] * 0.92
        y = self.center[1] + ny * self.semi[1] * 0.92
        zb = np.maximum(self.dome_height(x, y), self.floor) + 0.6
        zt = self.top_height(x, y) - 0.5
        return np.stack([x, y, zb + np.clip(nz, 0, 1) * np.maximum(zt - zb, 0)], axis=-1)

    def is_air(self, p: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(p)
        ok = self.ellipsoid.contains(p) & self.cap.contains(p) & (p[:, 2] > self.floor)
        for s in self.carve:
            ok &= ~s.contains(p)
        return ok


@dataclasses.dataclass
class Anatomy:
    patient: Patient
    components: list
    parts: Parts
    lungs: dict  # "right"/"left" -> Lung
    heart: Ellipsoid
    spine: list  # vertebra centres (3,), top to bottom, with their names
    ribs: dict  # (side, k) -> array of rib points
    knob: np.ndarray
    carina: np.ndarray
    sternum: np.ndarray  # points top -> bottom
    view_parts: dict = dataclasses.field(default_factory=dict)  # view name -> Parts drawn in that view only
    vessel_zones: list = dataclasses.field(default_factory=list)  # solids where no vessels are drawn
    notes: dict = dataclasses.field(default_factory=dict)


def _heart(p: Patient, thorax_w: float, dome_l: float, depth: float) -> Ellipsoid:
    """Heart ellipsoid scaled and placed so that its visible frontal width / thorax width = p.ctr and about
    two thirds of it lies left of the midline."""
    axis = np.array([0.80, 0.30, -0.50])
    R = frame(axis, up=(0.0, 1.0, 0.0))
    semi0 = np.array([6.4, 4.7, 4.4]) * np.array(
        [1 - 0.12 * p.heart_round, 1 + 0.08 * p.heart_round, 1 + 0.12 * p.heart_round]
    )
    k, xc = 1.0, 1.5
    for _ in range(4):
        semi = semi0 * k
        inv = R @ np.diag(semi**2) @ R.T  # M^-1
        hw = np.sqrt(inv[0, 0])
        zc = dome_l + 0.45 * np.sqrt(inv[2, 2]) + 0.6
        xc = hw / 3
        w = _visible_width(np.array([xc, 0, zc]), inv, dome_l)
        k *= (p.ctr * thorax_w) / max(w, 1e-3)
    semi = semi0 * k
    inv = R @ np.diag(semi**2) @ R.T
    yc = depth - 2.4 - np.sqrt(inv[1, 1]) + 0.4
    return Ellipsoid.make([xc, yc, dome_l + 0.45 * np.sqrt(inv[2, 2]) + 0.6], semi, R)


def _visible_width(c, inv, z_floor) -> float:
    """Frontal width of an ellipsoid's shadow above z_floor (shadow ellipse in x-z)."""
    S = np.array([[inv[0, 0], inv[0, 2]], [inv[0, 2], inv[2, 2]]])
    Si = np.linalg.inv(S)
    zs = np.linspace(max(z_floor, c[2] - np.sqrt(S[1, 1])), c[2] + np.sqrt(S[1, 1]), 64) - c[2]
    # x range at each z: Si00 x^2 + 2 Si01 x z + Si11 z^2 <= 1
    a, b, cc = Si[0, 0], 2 * Si[0, 1] * zs, Si[1, 1] * zs**2 - 1
    disc = b * b - 4 * a * cc
    ok = disc >= 0
    if not ok.any():
        return 0.0
    x1 = (-b[ok] - np.sqrt(disc[ok])) / (2 * a)
    x2 = (-b[ok] + np.sqrt(disc[ok])) / (2 * a)
    return float(x2.max() - x1.min())


def vertebra_levels(p: Patient):
    """(name, z centre, height, radius) for C5 .. L3, top to bottom."""
    t1 = p.apex_z - 1.0
    cervical, z = [], t1 + p.rib_step * 0.5 + 1.1
    for k in (7, 6, 5):
        cervical.append((f"C{k}", z, 1.9, 1.25))
        z += 2.1
    out = list(reversed(cervical))
    z = t1
    for k in range(1, 13):
        out.append((f"T{k}", z, p.rib_step, 1.45 + 0.05 * k))
        z -= p.rib_step + 0.04 * k
    z -= 0.4
    for k in range(1, 4):
        out.append((f"L{k}", z, 3.2, 2.2))
        z -= 3.5
    return out


def spine_center(p: Patient, z: float) -> np.ndarray:
    """Vertebral body centre at height z (scoliosis shifts x, kyphosis y)."""
    D = p.half_depth
    t1, t12 = p.apex_z - 1.0, p.apex_z - 1.0 - 11 * p.rib_step
    mid = 0.5 * (t1 + t12) if not p.scoliosis_low else t12 - 2.0
    span = (t1 - t12) * (0.65 if not p.scoliosis_low else 0.5)
    s = np.clip((z - mid) / span, -1, 1)
    x = p.scoliosis * np.cos(np.pi * s / 2) ** 1.5 + 0.15 * np.sin(0.4 * z)
    natural = 1.2 * np.cos(np.pi * np.clip((z - 0.5 * (t1 + t12)) / (t1 - t12 + 6), -1, 1))
    kyph = (1.2 + p.kyphosis) * np.cos(np.pi * np.clip((z - 0.5 * (t1 + t12)) / (t1 - t12 + 6), -1, 1))
    y = -D + 6.6 - (natural if p.kyphosis == 0 else kyph)
    return np.array([x, y, z])


def build_anatomy(p: Patient, rng: np.random.Generator) -> Anatomy:
    """All solids of the patient. ``rng`` is the anatomy stream: the same number of draws whatever the
    findings, so the same case draws the same patient."""
    W, D = p.half_width, p.half_depth * (1 + 0.06 * p.barrel)
    Wi = W - p.wall
    parts = Parts()
    view_parts = {"frontal": Parts(), "lateral": Parts()}
    comps: list[Component] = []

    levels = vertebra_levels(p)
    t1 = p.apex_z - 1.0
    carina_z = t1 - 4.3 * p.rib_step
    knob_z = carina_z + 2.3
    notch_z = t1 - 2.6 * p.rib_step + 1.0
    shoulder_z = notch_z + 3.0

    # ------------------------------------------------------------------ soft tissue envelope
    # a boxy cross-section (two ellipses intersected): the lateral chest wall is seen tangentially, as on a film
    flank = Ellipsoid.make([0, 0, -8], [W, D * 1.6, 55])
    chest = Ellipsoid.make([0, 0, -8], [W * 2.2, D, 55])
    comps.append(Component(MU_SOFT, [chest, flank, below(shoulder_z)]))
    # what lies outside the trunk is cut against the one ellipse that bounds the trunk there (cheaper
    # than the exact intersection): the flank at the sides and the top, the chest in front
    torso = (flank, below(shoulder_z))
    for k in (0.85, 1.15):  # nested shells: the shoulders' shadow fades into the chest, no hard rim
        shoulders = Ellipsoid.make([0, -1.0, shoulder_z + 1.0], [W + 3.0, D * 0.7 * k, 5.5 * k])
        comps.append(Component(MU_SOFT / 2, [shoulders], [torso]))
    neck = Ellipsoid.make([0, -0.5, shoulder_z + 9], [5.8, 6.2, 13.0])
    comps.append(Component(MU_SOFT, [neck], [torso, shoulders]))
    if p.breast > 0:
        for s in (-1, 1):
            b = Ellipsoid.make(
                [s * Wi * 0.52, D - 0.6 * p.breast, p.apex_z - 20.5], [p.breast * 1.15, p.breast * 1.2, p.breast * 0.95]
            )
            comps.append(Component(MU_SOFT * 0.92, [b], [(chest, below(shoulder_z))]))

    # ------------------------------------------------------------------ mediastinum and heart
    lung_front, lung_back = D - 2.1, -D + 2.6
    ly_c, ly_r = 0.5 * (lung_front + lung_back), 0.5 * (lung_front - lung_back)
    heart = _heart(p, 2 * Wi, p.dome_l, D)
    med = 1.0 + 0.35 * (p.mediastinum - 1)
    supmed = Ellipsoid.make([0.3, 0.8, carina_z + 4.0], [2.3 * med, 4.2, 11.0])
    kn = p.knob * (1 + 0.25 * p.aorta_tortuous)
    knob_c = np.array([2.3 + 0.5 * kn + 0.6 * p.aorta_tortuous, -0.6, knob_z])
    knob = Ellipsoid.make(knob_c, [1.6 * kn, 2.6, 1.9 * kn])
    desc_x = 1.9 + 0.8 * p.aorta_tortuous
    desc = Ellipsoid.make(
        [desc_x, -D + 7.8, knob_z - 11.0],
        [1.25 + 0.2 * p.aorta_tortuous, 1.3, 11.0],
        rotation("y", -0.05 * p.aorta_tortuous),
    )
    asc = Ellipsoid.make([-1.9 - 0.4 * p.aorta_tortuous, 1.4, carina_z - 2.2], [1.7 + 0.3 * p.aorta_tortuous, 2.2, 5.5])
    pa_trunk = Ellipsoid.make([2.5, 1.4, knob_z - 4.6], [1.5, 1.8, 1.5])

    # ------------------------------------------------------------------ lungs (air carved out of the body)
    lungs = {}
    for name, s, dome_z in (("right", -1, p.dome_r), ("left", 1, p.dome_l)):
        med_x = 1.0
        rx = (Wi - med_x) / 2
        zc = dome_z - 2.2
        c = np.array([s * (Wi + med_x) / 2, ly_c, zc])
        semi = np.array([rx, ly_r, 1.2 * (p.apex_z - zc)])
        hz = p.dome_depth
        d_c = np.array([c[0] + s * 0.6, 1.2, dome_z - hz])
        d_semi = np.array([(rx + 0.6) / 0.93, (ly_r + 0.6) / 0.97, hz])
        hil = np.array([s * (3.9 if s < 0 else 3.6), -0.6, carina_z - (3.2 if s < 0 else 1.8)])
        lung = Lung(s, c, semi, dome_z - hz * 1.05, d_c, d_semi, hil, [], p.apex_z)
        dome = lung.dome
        if s < 0:
            lung.carve = [dome, heart, supmed, asc]
            comps.append(Component(-(MU_SOFT - p.lung_mu), lung.solids, [dome, heart, supmed], [asc], lung=True))
        else:
            lung.carve = [dome, heart, supmed, knob, desc, pa_trunk]
            comps.append(
                Component(-(MU_SOFT - p.lung_mu), lung.solids, [dome, heart, supmed], [knob, desc, pa_trunk], lung=True)
            )
        lungs[name] = lung
    # gastric air bubble under the left dome
    ld = lungs["left"]
    comps.append(
        Component(-MU_SOFT * 0.95, [Ellipsoid.make([ld.center[0] + 1.0, 0.5, p.dome_l - 2.6], [2.8, 3.2, 1.5])])
    )

    # ------------------------------------------------------------------ spine
    spine = []
    bone = MU_BONE * p.bone
    for name, zc, h, r in levels:
        c = spine_center(p, zc)
        spine.append((name, c, h, r))
        top, bot = c + [0, 0, h / 2 - 0.2], c - [0, 0, h / 2 - 0.2]
        parts.tube(bot, top, r, 0.36 * bone, inner=r - 0.2, mu_inner=-0.16 * bone)  # cortex, trabecular bone
        for sx in (-1, 1):
            parts.blob(Ellipsoid.make(c + [sx * 0.85 * r, -r - 0.2, 0.1], [0.36, 0.7, 0.5]), 0.45 * bone)
            parts.blob(Ellipsoid.make(c + [sx * 0.85 * r, -r - 0.2, 0.1], [0.22, 0.5, 0.32]), -0.3 * bone)
            parts.tube(c + [sx * 0.7, -r - 1.0, 0.1], c + [sx * (1.3 + r), -r - 1.5, 0.25], 0.4, 0.4 * bone)
        parts.blob(Ellipsoid.make(c + [0, -r - 2.3, -0.7], [0.32, 1.4, 0.45], rotation("x", 0.5)), 0.45 * bone)

    # ------------------------------------------------------------------ ribs
    # Each rib is one arc from its vertebra round to the front. The posterior part is thick and dense and
    # runs out and down from the spine after a slight rise; the anterior part is thinner and fainter and
    # runs down and in, ending at the costal cartilage. Every rib differs a little in drop, width, density.
    ribs = {}
    rib_jit = rng.normal(0, 0.4, 12)
    rib_w = rng.uniform(0.88, 1.12, (12, 2))
    rib_d = rng.uniform(0.85, 1.15, (12, 2))
    for k in range(1, 13):
        name, zk, _, r_v = levels[3 + k - 1]
        sc = spine_center(p, zk)
        drop = 5.5 + 0.6 * k + rib_jit[k - 1]
        phi1 = 0.80 * np.pi if k <= 10 else (0.55 if k == 11 else 0.42) * np.pi
        rr = 0.36 + 0.012 * min(k, 8)
        for m, (name_s, s) in enumerate((("right", -1), ("left", 1))):
            lung = lungs[name_s]
            zmid = zk - 0.35 * drop
            cs = max(lung.section(min(zmid, lung.apex - 0.5)), 0.25)
            Rx = abs(lung.center[0]) + lung.semi[0] * cs + 0.8
            Ry = lung.semi[1] * max(cs, 0.55) + 0.9
            phi0 = np.arcsin(min(2.6 / Rx, 0.9))
            phi = np.linspace(phi0, phi1, 9)
            g = (1 - np.cos(phi)) / 2 + 0.12 * np.sin(phi) ** 2
            g = g + 0.35 * np.clip((phi - np.pi / 2) / (0.3 * np.pi), 0, None) ** 1.5  # anterior: down and in
            rise = 0.7 * np.clip(np.sin(2 * phi), 0, None) * (phi < np.pi / 2)
            pts = np.stack([s * Rx * np.sin(phi), ly_c - Ry * np.cos(phi), zk + 0.2 - drop * g + rise], axis=1)
            neck = sc + [s * (1.3 + r_v), -r_v - 1.5, 0.25]
            pts = np.vstack([neck, pts])
            ribs[(name_s, k)] = pts
            phim = np.concatenate([[phi0], 0.5 * (phi[1:] + phi[:-1])])  # per segment
            post = np.clip((np.pi * 0.55 - phim) / 0.5, 0, 1)  # 1 posterior .. 0 anterior, smooth between
            radius = rr * rib_w[k - 1, m] * (0.82 + 0.36 * post)
            dens = bone * rib_d[k - 1, m] * (0.42 + 0.38 * post) * np.linspace(1.0, 0.8, len(phim))
            dens[:4] *= [0.3, 0.45, 0.65, 0.85]  # the neck runs along the lateral ray: keep its end-on spot faint
            dens *= 1.0 if k <= 10 else 0.7
            # the thin anterior part is drawn solid (its marrow barely shows, and a solid tube costs half)
            hollow = post > 0.5
            parts.polyline(
                pts,
                radius,
                dens * np.where(hollow, 1.0, 0.8),
                inner=np.where(hollow, radius * 0.6, 0.0),
                mu_inner=-0.55 * dens,
            )
            if k <= 10:  # faint costal cartilage to the sternum
                end = pts[-1]
                stern = np.array([s * 1.4, D - 1.6, end[2] - 1.5 - 0.3 * k])
                parts.tube(end, stern, rr * 0.8, 0.05)

    # ------------------------------------------------------------------ sternum, clavicles, shoulders
    st_top = np.array([0, D - 1.4, notch_z - 0.6])
    st_bot = np.array([0, D - 1.2 + 0.3, notch_z - 17.5])
    sternum = np.linspace(st_top, st_bot, 7)
    parts.polyline(sternum, 0.75, 0.45 * bone, inner=0.5, mu_inner=-0.25 * bone)
    for s in (-1, 1):
        cl = np.array(
            [
                [s * 1.6, D - 1.3, notch_z],
                [s * 5.5, D - 1.5, notch_z + 0.6],
                [s * 10.0, D - 3.0, notch_z + 1.2],
                [s * (W - 1.0), D * 0.15 - 1.5, notch_z + 3.0],
                [s * (W + 0.6), -1.0, notch_z + 3.6],
            ]
        )
        parts.polyline(cl, [0.75, 0.65, 0.6, 0.6], bone * 0.9, inner=[0.45, 0.38, 0.35, 0.35], mu_inner=-0.4 * bone)
        # Shoulders and arms: down and out on the PA film (humeral heads at the top corners, arm soft
        # tissue along the film's sides), raised out of the field on the lateral film.
        for view, head, axis in (
            (
                "frontal",
                np.array([s * (W + 1.2), -1.0, notch_z + 1.2]),
                [s * np.sin(p.arm_out), 0.0, -np.cos(p.arm_out)],
            ),
            ("lateral", np.array([s * (W + 0.6), 1.0, notch_z + 4.5]), [s * 0.1, 0.6, 0.8]),
        ):
            axis = np.asarray(axis) / np.linalg.norm(axis)
            arm = Ellipsoid.make(head + axis * 17.0, [20.0, p.arm_r, p.arm_r], frame(axis))
            comps.append(Component(MU_SOFT, [arm], [torso], view=view))
            if view == "frontal":  # on the lateral the raised humeral heads lie above the film
                comps.append(Component(0.55 * bone, [Ellipsoid.make(head, [2.3, 2.3, 2.5])], view=view))
                comps.append(Component(-0.25 * bone, [Ellipsoid.make(head, [1.9, 1.9, 2.1])], view=view))
            # only the shaft's upper part: the rest lies beyond the film's edge in both views
            shaft = (head + axis * (1.0 if view == "frontal" else 5.0), head + axis * 12.0)
            view_parts[view].tube(*shaft, 1.1, 0.5 * bone, inner=0.7, mu_inner=-0.3 * bone)
        scap = Ellipsoid.make(
            [s * (Wi - 2.4), -D + 2.6, notch_z - 4.5],
            [5.2, 0.35, 7.5],
            rotation("z", -s * 0.65) @ rotation("y", s * 0.2),
        )
        comps.append(Component(0.8 * bone, [scap]))
        head = np.array([s * (W + 1.2), -1.0, notch_z + 1.2])
        parts.tube(head + [-s * 1.5, -1.0, 0.5], [s * (Wi - 5.5), -D + 2.2, notch_z - 2.0], 0.45, bone * 0.8)

    # ------------------------------------------------------------------ airways
    trachea_top = np.array([0.0, 1.8, p.fov_top + 2])
    carina = np.array([0.15, -0.4, carina_z])
    parts.polyline([trachea_top, [0.1, 1.0, notch_z], carina], 0.85, -MU_SOFT)
    parts.polyline([carina, [-2.2, -0.7, carina_z - 2.0], [-3.0, -0.9, carina_z - 3.4]], [0.62, 0.5], -MU_SOFT)
    parts.polyline([carina, [2.6, -0.9, carina_z - 1.6], [4.0, -1.1, carina_z - 3.6]], [0.55, 0.45], -MU_SOFT)

    anatomy = Anatomy(p, comps, parts, lungs, heart, spine, ribs, knob_c, carina, sternum, view_parts=view_parts)
    anatomy.notes.update(knob=knob, desc=desc, asc=asc, supmed=supmed, trunk=flank, notch_z=notch_z)
    _vessels(anatomy, rng)
    return anatomy


VESSEL_GENERATIONS = 5


def _vessels(anat: Anatomy, rng: np.random.Generator) -> None:
    """Pulmonary vessel trees from each hilum, branching in two at every generation and tapering toward the
    periphery. The lung's normalised box is split k-d fashion (each box along its longest side), and each
    branch runs from its parent's end toward the centre of its own box, so the branches fill the lung the way
    the vascular tree does. Drawn in lung-normalised coordinates (inflation stretches or crowds them);
    always the same number of draws."""
    p = anat.patient
    segs = []
    for name in ("right", "left"):
        lung = anat.lungs[name]
        span = np.array([lung.semi[0], lung.semi[1], 0.5 * (lung.apex - lung.floor)])
        lo = np.array([[-0.1, -0.95, 0.0]])
        hi = np.array([[1.0, 0.95, 1.0]])
        start = lung.hilum[None, :] + rng.normal(0, 0.3, 3)
        radius = np.array([0.55 * p.hilum_scale * p.vessel_scale])
        for gen in range(VESSEL_GENERATIONS):
            n = len(lo)
            axis = np.argmax((hi - lo) * span, axis=1)
            cut = lo[np.arange(n), axis] + (hi - lo)[np.arange(n), axis] * rng.uniform(0.35, 0.65, n)
            lo2, hi2 = np.repeat(lo, 2, 0), np.repeat(hi, 2, 0)
            lo2[1::2, :][np.arange(n), axis] = cut
            hi2[0::2, :][np.arange(n), axis] = cut
            centre = lo2 + (hi2 - lo2) * rng.uniform(0.3, 0.7, (2 * n, 3))
            target = lung.point(*centre.T)
            a = np.repeat(start, 2, 0)
            reach = 0.55 if gen < VESSEL_GENERATIONS - 1 else 1.0
            b = a + (target - a) * reach
            r = np.repeat(radius, 2) * rng.uniform(0.74, 0.86, 2 * n)  # about Murray's law, 2^(-1/3)
            # a kink half way in the long proximal branches: vessels are not straight rods
            mid = 0.5 * (a + b) + rng.normal(0, 0.12, (2 * n, 3)) * np.linalg.norm(b - a, axis=1, keepdims=True)
            if gen < 3:
                segs.extend(zip(a, mid, r))
                segs.extend(zip(mid, b, r * 0.93))
            else:
                segs.extend(zip(a, b, r))
            lo, hi, start, radius = lo2, hi2, b, r * 0.93
        # twigs: the last branches run on toward the lung's surface, thinning out
        tip = lung.point(*np.clip(lo + (hi - lo) * rng.uniform(0.0, 1.0, hi.shape), 0, 1).T)
        segs.extend(zip(start, start + (tip - start) * 0.8, radius * 0.7))
    anat.notes["vessels"] = segs


def finalize_vessels(anat: Anatomy) -> None:
    """Add the vessel segments whose midpoints lie in aerated lung outside the no-vessel zones."""
    p = anat.patient
    segs = anat.notes.pop("vessels")
    a = np.array([s[0] for s in segs])
    b = np.array([s[1] for s in segs])
    r = np.array([s[2] for s in segs])
    mid = 0.5 * (a + b)
    keep = np.zeros(len(segs), bool)
    hil = np.zeros(len(segs), bool)
    for lung in anat.lungs.values():
        ellip_ok = lung.ellipsoid.contains(mid) & (mid[:, 2] > lung.floor)
        air = lung.is_air(mid)
        keep |= air
        hil |= ellip_ok & (np.linalg.norm(mid - lung.hilum, axis=1) < 3.5)
    keep |= hil
    for zone in anat.vessel_zones:
        keep &= ~zone.contains(mid)
    mu = (MU_SOFT - p.lung_mu) * 1.8 * p.vessel_mu
    anat.parts.tubes(a[keep], b[keep], np.maximum(r[keep], 0.06), mu)


def cardiothoracic_ratio(anat: Anatomy) -> float:
    """Widest frontal heart shadow above the left dome / widest inner thorax (lateral lung walls)."""
    h = anat.heart
    inv = np.linalg.inv(h.M)
    heart_w = _visible_width(h.center, inv, anat.lungs["left"].dome_top - 1.0)
    r, l = anat.lungs["right"], anat.lungs["left"]
    thorax_w = (l.center[0] + l.semi[0]) - (r.center[0] - r.semi[0])
    return float(heart_w / thorax_w)
