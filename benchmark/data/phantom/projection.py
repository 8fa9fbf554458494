"""Analytic ray sums (line integrals of attenuation) through the phantom's solids, for parallel rays.

Every routine works in pixel units of one :class:`View` and only over each solid's bounding box in that
view. Chord lengths are exact: an ellipsoid or a finite cylinder occupies one interval along a ray.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from benchmark.data.phantom.geometry import Component, Ellipsoid, HalfSpace

BIG = 1e7
F = np.float32


@dataclasses.dataclass(frozen=True)
class View:
    """Parallel projection: pixel (row i, col j) is the ray through origin + (j+.5)px e_u + (i+.5)px e_v
    along ``d``; (e_u, e_v, d) is orthonormal."""

    origin: np.ndarray
    eu: np.ndarray
    ev: np.ndarray
    d: np.ndarray
    px: float  # cm per pixel
    size: int
    # The film: columns [crop, crop + keep) of the square canvas, stretched to ``size`` columns (a film
    # squashed to a square, as the image pipeline does with real films).
    crop: int = 0
    keep: int = 0
    # Each solid's matrix in this view, computed once: components share solids (a lung bounds the body's
    # cavity and the vessels' region) and every solid is used for its box and for its chords.
    memo: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def basis(self) -> np.ndarray:
        return np.column_stack([self.eu, self.ev, self.d])

    def to_pixels(self, p: np.ndarray) -> np.ndarray:
        """(..., 3) points -> (..., 3) as (col, row, depth) in pixel units (pixel centres at integers)."""
        q = (np.asarray(p, float) - self.origin) @ self.basis / self.px
        q[..., :2] -= 0.5
        return q

    def to_image(self, p: np.ndarray) -> np.ndarray:
        """(..., 3) points -> (..., 3) as (col, row, depth) in the final (cropped, stretched) image."""
        q = self.to_pixels(p)
        keep = self.keep or self.size
        q[..., 0] = (q[..., 0] - self.crop + 0.5) * (self.size / keep) - 0.5
        return q


def _ellipsoid_view(e: Ellipsoid, view: View):
    """The ellipsoid's matrix in the view basis, pixel units, and its centre in pixel coordinates."""
    hit = view.memo.get(id(e))
    if hit is not None and hit[0] is e:  # the solid itself is kept, so its id cannot be reused
        return hit[1]
    R = view.basis
    out = R.T @ e.M @ R * view.px**2, view.to_pixels(e.center)
    view.memo[id(e)] = (e, out)
    return out


def _bbox(c: np.ndarray, ext: tuple[float, float], size: int):
    j0 = max(int(np.floor(c[0] - ext[0])), 0)
    j1 = min(int(np.ceil(c[0] + ext[0])) + 1, size)
    i0 = max(int(np.floor(c[1] - ext[1])), 0)
    i1 = min(int(np.ceil(c[1] + ext[1])) + 1, size)
    return i0, i1, j0, j1


def ellipsoid_bbox(e: Ellipsoid, view: View):
    Mv, c = _ellipsoid_view(e, view)
    inv = np.linalg.inv(Mv)
    return _bbox(c, (np.sqrt(inv[0, 0]), np.sqrt(inv[1, 1])), view.size)


def _ellipsoid_interval(e: Ellipsoid, view: View, box):
    i0, i1, j0, j1 = box
    Mv, c = _ellipsoid_view(e, view)
    du = (np.arange(j0, j1) - c[0]).astype(F)
    dv = (np.arange(i0, i1) - c[1]).astype(F)
    a = Mv[2, 2]
    A = Mv[0, 2] ** 2 - a * Mv[0, 0]
    B = 2 * (Mv[0, 2] * Mv[1, 2] - a * Mv[0, 1])
    C = Mv[1, 2] ** 2 - a * Mv[1, 1]
    disc = (A * du * du)[None, :] + (C * dv * dv + a)[:, None] + (B * dv)[:, None] * du[None, :]
    half = np.sqrt(np.maximum(disc, 0)) / F(a)
    mid = (-Mv[0, 2] / a * du)[None, :] + (c[2] - Mv[1, 2] / a * dv)[:, None]
    return mid - half, mid + half


def _halfspace_interval(h: HalfSpace, view: View, box):
    i0, i1, j0, j1 = box
    n = view.basis.T @ h.normal  # normal in (u, v, d)
    off = (h.offset - h.normal @ view.origin) / view.px
    u = (np.arange(j0, j1) + 0.5).astype(F)
    v = (np.arange(i0, i1) + 0.5).astype(F)
    rest = off - (n[0] * u)[None, :] - (n[1] * v)[:, None]  # n_d * s <= rest
    if abs(n[2]) < 1e-9:
        ok = rest >= 0
        return np.where(ok, F(-BIG), F(BIG)), np.where(ok, F(BIG), F(-BIG))
    bound = rest / F(n[2])
    if n[2] > 0:
        return np.full_like(bound, -BIG), bound
    return bound, np.full_like(bound, BIG)


def _interval(s, view, box):
    if isinstance(s, (list, tuple)):  # an intersection of convex solids
        lo, hi = _interval(s[0], view, box)
        for t in s[1:]:
            l2, h2 = _interval(t, view, box)
            lo, hi = np.maximum(lo, l2), np.minimum(hi, h2)
        return lo, hi
    if isinstance(s, Ellipsoid):
        return _ellipsoid_interval(s, view, box)
    return _halfspace_interval(s, view, box)


def component_chord(comp: Component, view: View):
    """(box, chord in cm) of one component in one view, or None when it misses the image."""
    box = ellipsoid_bbox(comp.base[0], view)
    for s in comp.base[1:]:
        if isinstance(s, Ellipsoid):
            b = ellipsoid_bbox(s, view)
            box = (max(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), min(box[3], b[3]))
    if box[1] <= box[0] or box[3] <= box[2]:
        return None
    lo, hi = _interval(comp.base[0], view, box)
    for s in comp.base[1:]:
        l2, h2 = _interval(s, view, box)
        lo, hi = np.maximum(lo, l2), np.minimum(hi, h2)
    chord = np.maximum(hi - lo, 0)
    subs = [_interval(s, view, box) for s in comp.minus]
    for k in range(1, len(subs) + 1):
        sign = -1 if k % 2 else 1
        for combo in itertools.combinations(subs, k):
            l2, h2 = lo, hi
            for sl, sh in combo:
                l2, h2 = np.maximum(l2, sl), np.minimum(h2, sh)
            chord += sign * np.maximum(h2 - l2, 0)
    for s in comp.minus_disjoint:
        sl, sh = _interval(s, view, box)
        chord -= np.maximum(np.minimum(hi, sh) - np.maximum(lo, sl), 0)
    return box, np.maximum(chord, 0) * F(view.px)


# ---------------------------------------------------------------- batched tubes (finite cylinders)


def _tube_batch(pad, view: View, ua, va, au, av, cos, length, r, mu, ri, mui, xmajor: bool, lmax: float):
    """(flat pixel index, attenuation) of every ray inside the film that the pieces touch: mu * chord(r) +
    mui * chord(ri) of each piece (ri = 0: solid), over a strip that follows the piece: for x-major pieces
    every image column it crosses, and a window of rows around its centre line (y-major pieces: rows and
    columns swapped). Strips may start up to ``pad`` pixels outside the film.

    In the view frame a piece starts at in-plane (ua, va) with unit axis (au, av, cos). For the ray through
    an in-plane offset (du, dv): w = du au + dv av, the perpendicular distance is |du av - dv au| / sin, the
    cylinder spans depth mid +- half with mid = w cos / sin^2, half = sqrt(r^2 sin^2 - cross^2) / sin^2, and
    the end caps bound it to [-w / cos, (L - w) / cos]."""
    if not xmajor:  # swap the roles of rows and columns
        ua, va, au, av = va, ua, av, au
    rmax = float(r.max())
    slope = av / np.where(np.abs(au) > 1e-9, au, 1e-9)  # |slope| <= 1 along the major axis
    n_along = int(np.ceil(lmax + 2 * rmax)) + 3
    n_across = int(np.ceil(2 * rmax * 1.415)) + 3  # a window that fits any slope, which places the rows
    # A column meets the tube's projection (a band of half-width r about its axis) over 2 r sqrt(1 + slope^2)
    # rows: the middle rows of the window, with a margin for rounding (the window's first row stays, so each
    # ray's offset from the piece is computed as before, to the bit).
    n_rows = min(n_across, int(np.ceil(2 * rmax * np.sqrt(1 + float(np.max(np.abs(slope))) ** 2))) + 4)
    skip = (n_across - n_rows) // 2
    start = np.floor(np.minimum(ua, ua + au * length) - rmax - 1).astype(np.int64)
    start = np.minimum(np.maximum(start, -pad), view.size + pad - n_along)  # np.clip costs more on small arrays
    along = start[:, None] + np.arange(n_along)[None, :]  # (N, A) integer positions
    centre = va[:, None] + (along - ua[:, None]) * slope[:, None]
    first = np.floor(centre - n_across / 2 + 0.5).astype(np.int64)
    first = np.minimum(np.maximum(first, -pad), view.size + pad - n_across)

    au, av, cos, length, r, ri = (np.asarray(x, F) for x in (au, av, cos, length, r, ri))
    du = (along - ua[:, None]).astype(F)[:, None, :]  # (N, 1, A)
    rows = np.arange(skip, skip + n_rows, dtype=F)
    dv = (first - va[:, None]).astype(F)[:, None, :] + rows[None, :, None]  # (N, R, A)
    sin2 = np.maximum(au * au + av * av, F(1e-6))
    cross = dv * au[:, None, None]
    np.subtract(du * av[:, None, None], cross, out=cross)
    np.multiply(cross, cross, out=cross)  # cross^2
    # Most of a strip misses the tube (cross^2 >= r^2 sin^2: a chord of 0, which adds nothing to a sum): the
    # rest of the arithmetic runs on the rays that meet the cylinder only, in the same order, so every value
    # is the one the whole strip would give.
    hit = np.flatnonzero(cross < ((r * r) * sin2)[:, None, None])
    line = hit // n_along  # piece * n_rows + k - skip
    piece = line // n_rows
    a, k = hit - line * n_along, line - piece * n_rows + skip
    cross, dv, du = cross.ravel()[hit], dv.ravel()[hit], du[piece, 0, a]
    c = np.maximum(cos, F(1e-6))
    mid_factor = c * (1 / sin2)
    sin2 = sin2[piece]
    inv_sin2 = 1 / sin2
    w = dv * av[piece]
    w += du * au[piece]
    mid = w * mid_factor[piece]
    np.multiply(w, (-1 / c)[piece], out=w)  # s_lo
    s_lo = w
    s_hi = s_lo + (length / c)[piece]

    def chord_of(rad, coef):
        h = np.subtract((rad * rad)[piece] * sin2, cross)
        np.maximum(h, 0, out=h)
        np.sqrt(h, out=h)
        np.multiply(h, inv_sin2, out=h)
        hi = np.add(mid, h)
        np.minimum(hi, s_hi, out=hi)
        np.subtract(mid, h, out=h)
        np.maximum(h, s_lo, out=h)
        np.subtract(hi, h, out=hi)
        np.maximum(hi, 0, out=hi)
        np.multiply(hi, coef[piece], out=hi)
        return hi

    chord = chord_of(r, np.asarray(mu * view.px, F))
    if np.any(ri > 0):
        chord += chord_of(ri, np.asarray(mui * view.px, F))
    nonzero = np.flatnonzero(chord)  # the end caps cut the rest
    piece, k, a = piece[nonzero], k[nonzero], a[nonzero]
    row, col = first[piece, a] + k, along[piece, a]
    if not xmajor:
        row, col = col, row
    size = view.size
    inside = (row >= 0) & (row < size) & (col >= 0) & (col < size)
    return row[inside] * size + col[inside], chord[nonzero[inside]]


def tubes_into(acc: list[np.ndarray], view: View, a, b, r, mu, layer, ri=None, mui=None) -> None:
    """Add the attenuation of all tubes to the flat accumulators ``acc[layer]`` ([size * size])."""
    if len(a) == 0:
        return
    size = view.size
    ri = np.zeros_like(r) if ri is None else ri
    mui = np.zeros_like(mu) if mui is None else mui
    pa, pb = view.to_pixels(a), view.to_pixels(b)
    seg = pb - pa
    length = np.linalg.norm(seg, axis=1)
    r = r / view.px
    ri = ri / view.px
    # tubes thinner than a pixel would fall between pixel centres: widen them, keeping mu * r^2 (the
    # attenuation integrated across the tube)
    thin = r < 0.7
    mu = np.where(thin, mu * (r / 0.7) ** 2, mu)
    r = np.maximum(r, 0.7)
    keep = length > 1e-6
    flip = seg[:, 2] < 0  # orient every axis with d . a >= 0 (chords are symmetric)
    pa = np.where(flip[:, None], pa + seg, pa)
    seg = np.where(flip[:, None], -seg, seg)
    axis = seg / np.maximum(length, 1e-9)[:, None]
    xmaj = np.abs(axis[:, 0]) >= np.abs(axis[:, 1])
    plen = length * np.maximum(np.abs(axis[:, 0]), np.abs(axis[:, 1]))  # extent along the major axis
    margin = r + 1
    umin = np.minimum(pa[:, 0], pa[:, 0] + seg[:, 0]) - margin
    umax = np.maximum(pa[:, 0], pa[:, 0] + seg[:, 0]) + margin
    vmin = np.minimum(pa[:, 1], pa[:, 1] + seg[:, 1]) - margin
    vmax = np.maximum(pa[:, 1], pa[:, 1] + seg[:, 1]) + margin
    on = keep & (umax >= 0) & (umin < size) & (vmax >= 0) & (vmin < size)
    # Batches of alike pieces, each sized by its widest and longest: radius class (<= 1.6, 3.5, 7, 16 px, more),
    # solid or hollow, x- or y-major, short (vertebral bodies) or long (a humerus: its strips would size the
    # short ones' windows).
    group = np.searchsorted([1.6, 3.5, 7.0, 16.0], r) * 8 + (ri > 0) * 4 + ~xmaj * 2 + (plen > 24)
    for lay in (0, 1):
        sel_l = on & (layer == lay)
        if not sel_l.any():
            continue
        groups = []
        pad = 0
        for g in np.unique(group[sel_l]):
            sub = sel_l & (group == g)
            rmax = r[sub].max()
            lmax = min(max(6 * rmax, 16.0), plen[sub].max() + 1)
            groups.append((sub, not g & 2, lmax))
            pad = max(pad, int(np.ceil(lmax + 2 * rmax)) + 4)
        pixels, values = [], []
        for sel, xm, lmax in groups:
            n_pieces = np.maximum(np.ceil(plen[sel] / lmax).astype(int), 1)
            idx = np.flatnonzero(sel)
            rep = np.repeat(idx, n_pieces)
            k = np.arange(len(rep)) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
            frac = 1.0 / np.repeat(n_pieces, n_pieces)
            start = pa[rep] + seg[rep] * (k * frac)[:, None]
            ax = axis[rep]
            index, value = _tube_batch(
                pad,
                view,
                start[:, 0],
                start[:, 1],
                ax[:, 0],
                ax[:, 1],
                ax[:, 2],
                length[rep] * frac,
                r[rep],
                mu[rep],
                ri[rep],
                mui[rep],
                xm,
                lmax,
            )
            pixels.append(index)
            values.append(value)
        values = np.concatenate(values).astype(np.float64)
        acc[lay] += np.bincount(np.concatenate(pixels), values, minlength=size * size)


def blobs_into(acc: list[np.ndarray], view: View, centers, mats, mu, layer) -> None:
    """Add the attenuation of all small ellipsoids to the flat accumulators."""
    if len(centers) == 0:
        return
    R = view.basis
    Mv = np.einsum("ji,njk,kl->nil", R, mats, R) * view.px**2
    c = view.to_pixels(centers)
    inv = np.linalg.inv(Mv)
    ext_u, ext_v = np.sqrt(inv[:, 0, 0]), np.sqrt(inv[:, 1, 1])
    on = (c[:, 0] + ext_u >= 0) & (c[:, 0] - ext_u < view.size) & (c[:, 1] + ext_v >= 0) & (c[:, 1] - ext_v < view.size)
    if not on.any():
        return
    Mv, c, ext_u, ext_v, mu, layer = Mv[on], c[on], ext_u[on], ext_v[on], mu[on], layer[on]
    for big in (False, True):
        sel = (np.maximum(ext_u, ext_v) > 6) == big
        if not sel.any():
            continue
        B = int(np.ceil(2 * max(ext_u[sel].max(), ext_v[sel].max()))) + 3
        m, cc = Mv[sel], c[sel]
        j0 = np.floor(cc[:, 0] - ext_u[sel]).astype(int)
        i0 = np.floor(cc[:, 1] - ext_v[sel]).astype(int)
        off = np.arange(B)
        jj = j0[:, None, None] + off[None, None, :]
        ii = i0[:, None, None] + off[None, :, None]
        du = (jj - cc[:, 0, None, None]).astype(F)
        dv = (ii - cc[:, 1, None, None]).astype(F)
        a = m[:, 2, 2]
        A = (m[:, 0, 2] ** 2 - a * m[:, 0, 0])[:, None, None].astype(F)
        Bq = (2 * (m[:, 0, 2] * m[:, 1, 2] - a * m[:, 0, 1]))[:, None, None].astype(F)
        C = (m[:, 1, 2] ** 2 - a * m[:, 1, 1])[:, None, None].astype(F)
        disc = A * du * du + Bq * du * dv + C * dv * dv + a[:, None, None].astype(F)
        chord = 2 * np.sqrt(np.maximum(disc, 0)) * (mu[sel] * view.px / a)[:, None, None].astype(F)
        valid = (jj >= 0) & (jj < view.size) & (ii >= 0) & (ii < view.size)
        idx = np.where(valid, ii * view.size + jj, view.size**2).ravel()
        lay = np.repeat(layer[sel], B * B)
        w = chord.ravel()
        for L in (0, 1):
            sl = lay == L
            if sl.any():
                acc[L] += np.bincount(idx[sl], w[sl], minlength=view.size**2 + 1)[:-1]
