"""Solids of the phantom (patient coordinates in cm: x = patient's left, y = anterior, z = superior).

Three kinds of objects carry attenuation:

* :class:`Component`: a convex solid (an intersection of ellipsoids and half-spaces) minus a union of
  convex solids, with one attenuation coefficient. Along a ray every convex solid occupies one interval,
  so chords through intersections and differences are exact (interval arithmetic, inclusion-exclusion).
  Used for the body, the lungs (air carved out of the body) and large lesions.
* tubes: finite cylinders (rib arcs, clavicles, vessels, vertebral bodies, wires, catheters), summed.
* blobs: small ellipsoids (nodules, pedicles, clips), summed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

SHARP, SOFT = 0, 1  # layers: SOFT is blurred before display (ill-defined lesions)


def rotation(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def frame(long_axis: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """A rotation whose first column is ``long_axis`` (normalised)."""
    a = np.asarray(long_axis, float)
    a = a / np.linalg.norm(a)
    u = np.asarray(up, float)
    if abs(a @ u) > 0.95:
        u = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b = u - (u @ a) * a
    b /= np.linalg.norm(b)
    return np.column_stack([a, b, np.cross(a, b)])


@dataclasses.dataclass(frozen=True)
class Ellipsoid:
    center: np.ndarray  # (3,)
    M: np.ndarray  # (3, 3): (x - c)^T M (x - c) <= 1

    @classmethod
    def make(cls, center, semi, rot: np.ndarray | None = None) -> "Ellipsoid":
        semi = np.maximum(np.asarray(semi, float), 1e-3)
        R = np.eye(3) if rot is None else np.asarray(rot, float)
        M = R @ np.diag(1.0 / semi**2) @ R.T
        return cls(np.asarray(center, float), M)

    def contains(self, p: np.ndarray) -> np.ndarray:
        q = np.atleast_2d(p) - self.center
        return np.einsum("ni,ij,nj->n", q, self.M, q) <= 1.0

    def scaled(self, factor: float) -> "Ellipsoid":
        return Ellipsoid(self.center, self.M / factor**2)


@dataclasses.dataclass(frozen=True)
class HalfSpace:
    normal: np.ndarray  # (3,): normal . x <= offset
    offset: float

    def contains(self, p: np.ndarray) -> np.ndarray:
        return np.atleast_2d(p) @ self.normal <= self.offset


def below(z: float) -> HalfSpace:
    return HalfSpace(np.array([0.0, 0.0, 1.0]), float(z))


def above(z: float) -> HalfSpace:
    return HalfSpace(np.array([0.0, 0.0, -1.0]), -float(z))


Convex = Ellipsoid | HalfSpace


@dataclasses.dataclass
class Component:
    mu: float  # attenuation per cm added inside the solid
    base: list  # intersection; base[0] is an Ellipsoid (bounds)
    minus: list = dataclasses.field(default_factory=list)  # exact (inclusion-exclusion)
    minus_disjoint: list = dataclasses.field(default_factory=list)  # assumed disjoint from the rest
    layer: int = SHARP
    view: str | None = None  # drawn in this view only (arms: down on the PA film, raised on the lateral)
    lung: bool = False  # aerated lung: carries the parenchymal texture

    def contains(self, p: np.ndarray) -> np.ndarray:
        inside = np.ones(len(np.atleast_2d(p)), bool)
        for s in self.base:
            inside &= s.contains(p)
        for s in (*self.minus, *self.minus_disjoint):
            inside &= ~_contains(s, p)
        return inside


def _contains(s, p) -> np.ndarray:
    if isinstance(s, (list, tuple)):
        inside = np.ones(len(np.atleast_2d(p)), bool)
        for t in s:
            inside &= t.contains(p)
        return inside
    return s.contains(p)


class Parts:
    """Accumulates tubes and blobs as flat lists, turned into arrays once."""

    def __init__(self) -> None:
        self.tube_a: list = []
        self.tube_b: list = []
        self.tube_r: list = []
        self.tube_mu: list = []
        self.tube_layer: list = []
        self.tube_ri: list = []
        self.tube_mui: list = []
        self.blob_c: list = []
        self.blob_m: list = []
        self.blob_mu: list = []
        self.blob_layer: list = []

    def tube(self, a, b, r: float, mu: float, layer: int = SHARP, inner: float = 0.0, mu_inner: float = 0.0) -> None:
        """A finite cylinder; ``inner`` > 0 adds a coaxial cylinder of that radius with ``mu_inner``
        (a hollow bone: dense cortex, lighter marrow)."""
        self.tube_ri.append(float(inner))
        self.tube_mui.append(float(mu_inner))
        self.tube_a.append(np.asarray(a, float))
        self.tube_b.append(np.asarray(b, float))
        self.tube_r.append(float(r))
        self.tube_mu.append(float(mu))
        self.tube_layer.append(layer)

    def tubes(self, a, b, r, mu, layer: int = SHARP, inner=0.0, mu_inner=0.0) -> None:
        """Many cylinders at once: ``a``, ``b`` (n, 3); radii and coefficients scalars or one value each."""
        n = len(a)
        r, mu, inner, mu_inner = (
            np.broadcast_to(np.asarray(v, float), (n,)).tolist() for v in (r, mu, inner, mu_inner)
        )
        self.tube_a.extend(np.asarray(a, float))
        self.tube_b.extend(np.asarray(b, float))
        self.tube_r.extend(r)
        self.tube_mu.extend(mu)
        self.tube_layer.extend([layer] * n)
        self.tube_ri.extend(inner)
        self.tube_mui.extend(mu_inner)

    def polyline(self, points, r, mu, layer: int = SHARP, inner=0.0, mu_inner=0.0) -> None:
        """A chain of cylinders; radii and coefficients may be scalars or one value per segment."""
        pts = np.asarray(points, float)
        self.tubes(pts[:-1], pts[1:], r, mu, layer, inner, mu_inner)

    def blob(self, e: Ellipsoid, mu: float, layer: int = SHARP) -> None:
        self.blob_c.append(e.center)
        self.blob_m.append(e.M)
        self.blob_mu.append(float(mu))
        self.blob_layer.append(layer)

    def tube_arrays(self):
        """(a, b, r, mu, layer, inner r, inner mu) arrays."""
        if not self.tube_a:
            z = np.zeros((0, 3))
            return z, z, np.zeros(0), np.zeros(0), np.zeros(0, int), np.zeros(0), np.zeros(0)
        return (
            np.array(self.tube_a),
            np.array(self.tube_b),
            np.array(self.tube_r),
            np.array(self.tube_mu),
            np.array(self.tube_layer),
            np.array(self.tube_ri),
            np.array(self.tube_mui),
        )

    def blob_arrays(self):
        if not self.blob_c:
            return np.zeros((0, 3)), np.zeros((0, 3, 3)), np.zeros(0), np.zeros(0, int)
        return np.array(self.blob_c), np.array(self.blob_m), np.array(self.blob_mu), np.array(self.blob_layer)

    def drop_tubes(self, keep: np.ndarray) -> None:
        for name in ("tube_a", "tube_b", "tube_r", "tube_mu", "tube_layer", "tube_ri", "tube_mui"):
            seq = getattr(self, name)
            setattr(self, name, [v for v, k in zip(seq, keep) if k])
