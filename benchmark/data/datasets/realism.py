"""Two simple statistics that tell a chest film from a synthetic render, per view, after xbench's pipeline.

* side-band background: the share of near-black pixels (value < 25) in the outer 15 % of columns on each
  side. A real PA film is filled by the chest edge to edge (Open-i: about 0.11 PA, 0.26 lateral); a body
  floating in black scores near 1.
* spectral slope: the least-squares slope of log radial power against log frequency, 4-99 cycles per image,
  of the mean-subtracted image. Anatomical noise in chest radiographs falls near f^-3 (Open-i: about -2.8
  PA, -3.2 lateral); a render that is too smooth falls faster.

Both are computed on the images exactly as a run sees them (``Dataset.images``: resize + histogram
equalisation), so ``xbench data info phantom --realism`` and ``xbench data info openi --root DIR --realism``
compare like with like.
"""

from collections.abc import Sequence

import numpy as np

from benchmark.core.errors import XbenchError

BAND = 0.15  # outer share of columns on each side
BLACK = 25  # pixel value below which a pixel counts as background
F_LO, F_HI = 4, 99  # cycles per image fitted


def side_band_background(image: np.ndarray) -> float:
    """Share of pixels < BLACK in the outer BAND of columns on both sides of a uint8 [H, W] image."""
    w = image.shape[1]
    k = max(1, int(round(BAND * w)))
    band = np.concatenate([image[:, :k], image[:, w - k :]], axis=1)
    return float((band < BLACK).mean())


def spectral_slope(image: np.ndarray) -> float:
    """Slope of log mean radial power vs log frequency (cycles per image, integer bins F_LO..F_HI)."""
    img = np.asarray(image, np.float64)
    h, w = img.shape
    if min(h, w) < 2 * F_HI + 2:
        raise XbenchError(f"spectral slope needs images of at least {2 * F_HI + 2} px, not {h}x{w}; use --size 256")
    power = np.abs(np.fft.fft2(img - img.mean())) ** 2
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * w
    radius = np.rint(np.hypot(fy[:, None], fx[None, :])).astype(int).ravel()
    sums = np.bincount(radius, power.ravel())
    counts = np.bincount(radius)
    f = np.arange(F_LO, F_HI + 1)
    mean_power = sums[f] / counts[f]
    return float(np.polyfit(np.log(f), np.log(np.maximum(mean_power, 1e-12)), 1)[0])


def realism_stats(pixels: np.ndarray) -> dict[str, dict[str, float]]:
    """Per view: mean (and sd) of both statistics over uint8 pairs [N, 2, H, W] (frontal, lateral)."""
    if len(pixels) == 0:
        raise XbenchError("no images to measure; check the dataset's root and cases")
    out = {}
    for v, view in enumerate(("frontal", "lateral")):
        band = np.array([side_band_background(im) for im in pixels[:, v]])
        slope = np.array([spectral_slope(im) for im in pixels[:, v]])
        out[view] = {
            "side_band_background": float(band.mean()),
            "side_band_background_sd": float(band.std()),
            "spectral_slope": float(slope.mean()),
            "spectral_slope_sd": float(slope.std()),
        }
    return out


def realism_summary(dataset, cases: Sequence, n: int = 200) -> dict[str, str]:
    """``data info --realism``: both statistics over the first ``n`` of ``cases``, as label -> text rows."""
    if n < 1:
        raise XbenchError(f"--realism-cases must be at least 1, not {n}")
    pairs = dataset.images(list(cases)[:n])
    stats = realism_stats(pairs.pixels)
    rows = {"realism: cases measured": f"{len(pairs.pixels)} (per view, {pairs.pixels.shape[-1]} px, after pipeline)"}
    for view, s in stats.items():
        rows[f"realism: {view} side-band background (<{BLACK}, outer {BAND:.0%})"] = (
            f"{s['side_band_background']:.3f} ± {s['side_band_background_sd']:.3f}"
        )
        rows[f"realism: {view} spectral slope ({F_LO}-{F_HI} cycles/image)"] = (
            f"{s['spectral_slope']:.2f} ± {s['spectral_slope_sd']:.2f}"
        )
    return rows
