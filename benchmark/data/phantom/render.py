"""From the phantom's solids to two 8-bit radiographs: ray sums, film curve, quantum noise, blur."""

from __future__ import annotations

import numpy as np

from benchmark.data.phantom.anatomy import MU_SOFT, Anatomy
from benchmark.data.phantom.geometry import SHARP, SOFT, rotation
from benchmark.data.phantom.projection import View, blobs_into, component_chord, tubes_into

FOV = 40.0  # cm, both views


def make_views(anat: Anatomy, size: int) -> dict[str, View]:
    p = anat.patient
    px = FOV / size
    R = rotation("z", p.yaw) @ rotation("x", p.tilt) @ rotation("y", p.roll)
    pivot = np.array([0.0, 0.0, 12.0])

    def view(origin, eu, ev, d):
        o = pivot + R @ (np.asarray(origin, float) - pivot)
        return View(o, R @ np.asarray(eu, float), R @ np.asarray(ev, float), R @ np.asarray(d, float), px, size)

    frontal = view([-FOV / 2 + p.fov_shift, -40.0, p.fov_top], [1, 0, 0], [0, 0, -1], [0, 1, 0])
    lateral = view([-40.0, FOV / 2 + 0.5 * p.fov_shift + 1.0, p.fov_top], [0, -1, 0], [0, 0, -1], [1, 0, 0])
    return {"frontal": frontal, "lateral": lateral}


def _resize_axis(img: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Linear interpolation along one axis between pixel-centre grids (edge-clamped)."""
    n_in = img.shape[axis]
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0, n_in - 1)
    i0 = np.minimum(np.floor(x).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    t = (x - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    shape = [1, 1]
    shape[axis] = n_out
    t = t.reshape(shape)
    return np.take(img, i0, axis) * (1 - t) + np.take(img, i1, axis) * t


def resize(img: np.ndarray, n: int) -> np.ndarray:
    return _resize_axis(_resize_axis(img, n, 0), n, 1)


def ray_sums(anat: Anatomy, view: View) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, soft) attenuation line integrals, each [size, size] float32.

    Tubes and small ellipsoids (bones, vessels, devices: fine detail) are summed at full resolution; the
    large smooth components (body, lungs, fluid, opacities) at half resolution, then interpolated."""
    n = view.size
    acc = [np.zeros(n * n, np.float64), np.zeros(n * n, np.float64)]
    a, b, r, mu, layer, ri, mui = anat.parts.tube_arrays()
    tubes_into(acc, view, a, b, r, mu, layer, ri, mui)
    c, m, bmu, blayer = anat.parts.blob_arrays()
    blobs_into(acc, view, c, m, bmu, blayer)
    sharp = acc[0].reshape(n, n).astype(np.float32)
    soft = acc[1].reshape(n, n).astype(np.float32)
    half = n // 2 if n >= 128 else n
    low = View(view.origin, view.eu, view.ev, view.d, view.px * n / half, half)
    layers = [np.zeros((half, half), np.float32), np.zeros((half, half), np.float32)]
    for comp in anat.components:
        out = component_chord(comp, low)
        if out is None:
            continue
        (i0, i1, j0, j1), chord = out
        layers[comp.layer][i0:i1, j0:j1] += np.float32(comp.mu) * chord
    if half != n:
        sharp += resize(layers[SHARP], n)
        if layers[SOFT].any():
            soft += resize(layers[SOFT], n)
    else:
        sharp += layers[SHARP]
        soft += layers[SOFT]
    return sharp, soft


def box_blur(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window (edge-replicated), by cumulative sums."""
    if r < 1:
        return img
    out = img
    for axis in (0, 1):
        pad = np.concatenate(
            [np.repeat(np.take(out, [0], axis), r + 1, axis), out, np.repeat(np.take(out, [-1], axis), r, axis)], axis
        )
        cs = np.cumsum(pad, axis=axis, dtype=np.float32)
        n = out.shape[axis]
        hi = np.take(cs, np.arange(2 * r + 1, 2 * r + 1 + n), axis)
        lo = np.take(cs, np.arange(0, n), axis)
        out = (hi - lo) / np.float32(2 * r + 1)
    return out


def gauss_blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Three box passes approximate a Gaussian."""
    if sigma_px < 0.5:
        return img
    r = max(int(round(np.sqrt(12 * sigma_px**2 / 3 + 1) / 2 - 0.5)), 1)
    for _ in range(3):
        img = box_blur(img, r)
    return img


def smooth3(img: np.ndarray) -> np.ndarray:
    """[1 2 1]/4 separable blur."""
    p = np.pad(img, 1, mode="edge")
    p = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
    return 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]


def window(anat: Anatomy, view_name: str) -> tuple[float, float]:
    """Film-curve centre and width for a view, from the patient's anatomy only (never from findings'
    pixels), so a finding changes the image only where it projects."""
    p = anat.patient
    D, W = p.half_depth, p.half_width
    delta = MU_SOFT - p.ref_lung_mu
    wi = W - p.wall
    if view_name == "frontal":
        xc = (wi + 1) / 2
        lung = 2 * D * np.sqrt(1 - (xc / W) ** 2) * MU_SOFT - 2 * (D - 2.35) * 0.95 * delta
        dense = 2 * D * MU_SOFT
    else:
        lung = 2 * W * MU_SOFT - 2 * (wi - 1) * 0.95 * delta
        dense = lung + 2.4
    centre = lung + 0.36 * (dense - lung) + p.exposure
    width = (dense - lung) / 2.3 * p.contrast
    return centre, width


def develop(
    anat: Anatomy, view_name: str, sharp: np.ndarray, soft: np.ndarray, noise_rng: np.random.Generator
) -> np.ndarray:
    p = anat.patient
    size = sharp.shape[0]
    px = FOV / size
    A = sharp + gauss_blur(soft, 0.35 / px) if soft.any() else sharp
    centre, width = window(anat, view_name)
    # quantum noise: fewer photons behind dense parts
    n = noise_rng.standard_normal(A.shape, dtype=np.float32)
    n = smooth3(n) * np.float32(1.6)
    A = A + n * np.float32(0.028 * p.noise) * np.exp(np.float32(0.5) * np.minimum(A - centre, 3.0))
    y = 1.0 / (1.0 + np.exp(-(A - np.float32(centre)) / np.float32(width)))
    y0 = 1.0 / (1.0 + np.exp(centre / width))
    y = (y - y0) / (1 - y0)
    # digital edge enhancement (unsharp mask) and detector blur
    k = 4 if size % 4 == 0 else 1
    small = y.reshape(size // k, k, size // k, k).mean(axis=(1, 3))
    y = y + np.float32(0.6) * (y - resize(gauss_blur(small, 1.6 / px / k), size))
    y = smooth3(y)
    return np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)
