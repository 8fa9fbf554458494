"""From the phantom's solids to two 8-bit radiographs: ray sums, film curve, quantum noise, blur."""

from __future__ import annotations

import functools

import numpy as np

from benchmark.data.phantom.anatomy import MU_SOFT, Anatomy
from benchmark.data.phantom.geometry import SHARP, SOFT, rotation
from benchmark.data.phantom.projection import View, blobs_into, component_chord, tubes_into

# Film formation, calibrated with ``benchmark.data.datasets.realism`` toward the Open-i figures of issue 15
# (spectral slope about -2.8 PA, -3.2 lateral after the pipeline): a film downsampled to 256 px keeps detail
# up to its Nyquist limit (no detector blur on the PA; the lateral, with more scatter, a little), so the
# radial spectrum falls near f^-3 as real films do.
TEXTURE = 0.016  # parenchymal texture per cm of aerated lung
TEXTURE_BETA = 2.6  # its power spectrum's slope
QUANTUM_NOISE = 0.03
NOISE_BLUR = 0.05
EDGE_ENHANCE = 0.8  # unsharp-mask gain
DETECTOR_BLUR = {"frontal": 0.0, "lateral": 0.08}  # side weight of the final 3-tap blur


def make_views(anat: Anatomy, size: int) -> dict[str, View]:
    """Both films, framed like a technologist frames them: a square canvas ``fov_h`` cm high whose central
    columns (the chest's width on the PA film, its depth on the lateral, plus a margin) become the film,
    stretched to a square as the image pipeline squashes a real film."""
    p = anat.patient
    px = p.fov_h / size
    R = rotation("z", p.yaw) @ rotation("x", p.tilt) @ rotation("y", p.roll)
    pivot = np.array([0.0, 0.0, 12.0])

    def view(origin, eu, ev, d, half_w):
        keep = int(np.clip(round(2 * half_w / px), 8, size))
        o = pivot + R @ (np.asarray(origin, float) - pivot)
        eu, ev, d = (R @ np.asarray(v, float) for v in (eu, ev, d))
        return View(o, eu, ev, d, px, size, (size - keep) // 2, keep)

    half = p.fov_h / 2
    frontal = view([p.frame_x - half, -40.0, p.fov_top], [1, 0, 0], [0, 0, -1], [0, 1, 0], p.frame_w)
    lateral = view([-40.0, p.frame_y + half, p.fov_top], [0, -1, 0], [0, 0, -1], [1, 0, 0], p.frame_d)
    return {"frontal": frontal, "lateral": lateral}


def _resize_axis(img: np.ndarray, n_out: int, axis: int, start: float = 0.0, length: float | None = None) -> np.ndarray:
    """Linear interpolation along one axis between pixel-centre grids (edge-clamped): the source window
    [start, start + length) (in source pixels; default the whole axis) onto ``n_out`` pixels."""
    n_in = img.shape[axis]
    length = n_in if length is None else length
    x = start + (np.arange(n_out) + 0.5) * (length / n_out) - 0.5
    x = np.clip(x, 0, n_in - 1)
    i0 = np.minimum(np.floor(x).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    t = (x - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    shape = [1] * img.ndim
    shape[axis] = n_out
    t = t.reshape(shape)
    return np.take(img, i0, axis) * (1 - t) + np.take(img, i1, axis) * t


def resize(img: np.ndarray, n: int) -> np.ndarray:
    return _resize_axis(_resize_axis(img, n, 0), n, 1)


def ray_sums(anat: Anatomy, view: View, name: str, grain: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sharp, soft) attenuation line integrals over the film, each [size, size] float32.

    Tubes and small ellipsoids (bones, vessels, devices: fine detail) are summed at full resolution; the
    large smooth components (body, lungs, fluid, opacities) at half resolution, where ``grain`` (a texture
    field on that grid, see :func:`texture`) multiplies the aerated lung's path length, then interpolated.
    The canvas's film columns are stretched to the square film."""
    n = view.size
    acc = [np.zeros(n * n, np.float64), np.zeros(n * n, np.float64)]
    both = (anat.parts, anat.view_parts[name])
    tubes_into(acc, view, *(np.concatenate(arrays) for arrays in zip(*(p.tube_arrays() for p in both))))
    blobs_into(acc, view, *(np.concatenate(arrays) for arrays in zip(*(p.blob_arrays() for p in both))))
    half = n // 2 if n >= 128 else n
    low = View(view.origin, view.eu, view.ev, view.d, view.px * n / half, half)
    layers = np.zeros((2, half, half), np.float32)
    lung = np.zeros((half, half), np.float32)
    for comp in anat.components:
        if comp.view not in (None, name):
            continue
        out = component_chord(comp, low)
        if out is None:
            continue
        (i0, i1, j0, j1), chord = out
        layers[comp.layer, i0:i1, j0:j1] += np.float32(comp.mu) * chord
        if comp.lung:
            lung[i0:i1, j0:j1] += chord
    if grain is not None:
        layers[SHARP] += lung * grain
    keep, k = view.keep or n, n // half

    def film(fine, coarse):
        out = _resize_axis(_resize_axis(coarse, n, 0), n, 1, view.crop / k, keep / k)
        fine = fine.reshape(n, n).astype(np.float32)
        out += _resize_axis(fine, n, 1, view.crop, keep) if keep != n else fine
        return out

    soft = acc[1].any() or layers[SOFT].any()  # most cases have no ill-defined lesion: skip that layer
    return film(acc[0], layers[SHARP]), film(acc[1], layers[SOFT]) if soft else np.zeros((n, n), np.float32)


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


def smooth3(img: np.ndarray, side: float = 0.25) -> np.ndarray:
    """[side, 1 - 2 side, side] separable blur ([1 2 1]/4 by default); side 0 is the identity."""
    if side == 0:
        return img
    p = np.pad(img, 1, mode="edge")
    s, c = np.float32(side), np.float32(1 - 2 * side)
    p = s * p[:-2] + c * p[1:-1] + s * p[2:]
    return s * p[:, :-2] + c * p[:, 1:-1] + s * p[:, 2:]


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


@functools.lru_cache(maxsize=4)
def _spectrum_amplitude(n: int, beta: float) -> np.ndarray:
    fy = np.fft.fftfreq(n) * n
    fx = np.fft.rfftfreq(n) * n
    amp = (np.maximum(np.hypot(fy[:, None], fx[None, :]), 1.0) ** (-beta / 2)).astype(np.float32)
    amp[0, 0] = 0
    return amp


def texture(rng: np.random.Generator, n: int, beta: float = TEXTURE_BETA) -> np.ndarray:
    """A [n, n] Gaussian random field of unit standard deviation whose power falls as f^-beta: the
    anatomical noise of overlapping lung structure, too fine and too many to model one by one."""
    amp = _spectrum_amplitude(n, beta)
    spec = rng.standard_normal((2, *amp.shape), dtype=np.float32)
    field = np.fft.irfft2((spec[0] + 1j * spec[1]) * amp, s=(n, n)).astype(np.float32)
    return field / field.std()


def grains(anat: Anatomy, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per view, the lung texture on the ray sums' half-resolution grid, in attenuation per cm of aerated
    lung. One field serves both views, transposed for the lateral (another section through the same
    lungs); the lateral's rays cross both lungs, so it is scaled back toward the PA's grain."""
    half = size // 2 if size >= 128 else size
    field = texture(rng, half) * np.float32(TEXTURE * anat.patient.texture)
    return {"frontal": field, "lateral": np.ascontiguousarray(field[::-1].T) * np.float32(0.7)}


def develop(
    anat: Anatomy,
    view_name: str,
    sharp: np.ndarray,
    soft: np.ndarray,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    p = anat.patient
    size = sharp.shape[0]
    px = p.fov_h / size
    A = sharp + gauss_blur(soft, 0.35 / px) if soft.any() else sharp
    centre, width = window(anat, view_name)
    # quantum noise: fewer photons behind dense parts
    n = noise_rng.standard_normal(A.shape, dtype=np.float32)
    n = smooth3(n, NOISE_BLUR) * np.float32(1.6)
    A = A + n * np.float32(QUANTUM_NOISE * p.noise) * np.exp(np.float32(0.5) * np.minimum(A - centre, 3.0))
    y = 1.0 / (1.0 + np.exp(-(A - np.float32(centre)) / np.float32(width)))
    y0 = 1.0 / (1.0 + np.exp(centre / width))
    y = (y - y0) / (1 - y0)
    # digital edge enhancement (unsharp mask) and detector blur
    k = 4 if size % 4 == 0 else 1
    small = y.reshape(size // k, k, size // k, k).mean(axis=(1, 3))
    y = y + np.float32(EDGE_ENHANCE) * (y - resize(gauss_blur(small, 1.6 / px / k), size))
    y = smooth3(y, DETECTOR_BLUR[view_name])
    img = np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if p.marker:
        _side_marker(img, view_name, p.marker)
    return img


_LETTERS = {
    "R": ["1110", "1001", "1001", "1110", "1010", "1001", "1001"],
    "L": ["1000", "1000", "1000", "1000", "1000", "1000", "1111"],
}


def _side_marker(img: np.ndarray, view_name: str, where: int) -> None:
    """A lead letter on the film's outer corner (upper or lower): R on the patient's right of the PA film
    (the image's left), L on the lateral (left side to the detector)."""
    size = img.shape[0]
    cell = max(1, round(size / 96))
    letter = "L" if view_name == "lateral" else "R"
    glyph = np.kron(np.array([[c == "1" for c in row] for row in _LETTERS[letter]]), np.ones((cell, cell), bool))
    h, w = glyph.shape
    r0 = 2 * cell if where == 1 else size - h - 3 * cell
    c0 = 2 * cell if (view_name == "frontal" or where == 2) else size - w - 3 * cell
    region = img[r0 : r0 + h, c0 : c0 + w]
    region[glyph] = 245
