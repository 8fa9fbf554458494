"""Film realism statistics: what they measure on known images, and phantom-2 kept within real films' range."""

import numpy as np
import pytest

from benchmark.core.errors import XbenchError
from benchmark.data.datasets import DataConfig, get_dataset
from benchmark.data.datasets.realism import realism_stats, realism_summary, side_band_background, spectral_slope

# phantom-2's bars (issue 15): Open-i measures about 0.11 / 0.26 background and -2.8 / -3.2 slope (PA / lateral)
BOUNDS = {
    "frontal": {"side_band_background": (0.0, 0.25), "spectral_slope": (-3.2, -2.6)},
    "lateral": {"side_band_background": (0.0, 0.40), "spectral_slope": (-3.5, -2.8)},
}


def power_law_field(n: int, beta: float, seed: int = 0) -> np.ndarray:
    """A uint8 image whose radial power falls as f^-beta (random phases), built independently of realism.py."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n) * n, np.fft.fftfreq(n) * n, indexing="ij"))
    spec = np.where(f > 0, np.maximum(f, 1e-9) ** (-beta / 2), 0) * np.exp(2j * np.pi * rng.random((n, n)))
    field = np.real(np.fft.ifft2(spec))
    field = (field - field.min()) / (field.max() - field.min())
    return np.round(field * 200 + 30).astype(np.uint8)


def test_side_band_background_counts_only_dark_pixels_in_the_outer_columns():
    img = np.full((100, 100), 128, np.uint8)
    assert side_band_background(img) == 0.0
    img[:, :15] = 0  # the whole left band black: half of both bands
    assert side_band_background(img) == pytest.approx(0.5)
    img[:, 40:60] = 0  # the centre does not count
    assert side_band_background(img) == pytest.approx(0.5)
    img[:, 85:] = 24  # below 25 counts, 25 does not
    assert side_band_background(img) == pytest.approx(1.0)
    img[:, 85:] = 25
    assert side_band_background(img) == pytest.approx(0.5)


@pytest.mark.parametrize("beta", [2.0, 3.0, 4.0])
def test_spectral_slope_recovers_a_known_power_law(beta):
    # quantisation to uint8 adds a white floor; at 256 px it moves the fitted slope by well under 0.1
    assert spectral_slope(power_law_field(256, beta)) == pytest.approx(-beta, abs=0.1)


def test_spectral_slope_of_white_noise_is_flat_and_small_images_are_refused():
    noise = np.random.default_rng(1).integers(0, 256, (256, 256)).astype(np.uint8)
    assert spectral_slope(noise) == pytest.approx(0.0, abs=0.1)
    with pytest.raises(XbenchError, match="at least 200 px"):
        spectral_slope(noise[:64, :64])


def _check(stats):
    for view, bounds in BOUNDS.items():
        for name, (lo, hi) in bounds.items():
            assert lo <= stats[view][name] <= hi, (view, name, stats[view][name])


def test_phantom_films_look_like_films_over_a_few_cases():
    ds = get_dataset("phantom", DataConfig(max_cases=16))
    stats = realism_stats(ds.images(ds.splits().train).pixels)
    _check(stats)


@pytest.mark.slow
def test_phantom_films_look_like_films_over_200_cases():
    ds = get_dataset("phantom")
    stats = realism_stats(ds.images(ds.splits().all[:200]).pixels)
    _check(stats)


def test_realism_summary_rows_and_bad_count():
    ds = get_dataset("phantom", DataConfig(max_cases=2))
    rows = realism_summary(ds, ds.splits().train, n=2)
    assert rows["realism: cases measured"].startswith("2 ")
    assert sum("side-band" in k for k in rows) == 2 and sum("spectral slope" in k for k in rows) == 2
    with pytest.raises(XbenchError, match="--realism-cases must be at least 1"):
        realism_summary(ds, ds.splits().train, n=0)


def test_data_info_realism_on_phantom_and_an_openi_tree(xbench, openi_tree):
    result = xbench("data", "info", "phantom", "--realism", "--realism-cases", 2)
    assert result.exit_code == 0, result.output
    assert "frontal side-band background" in result.output and "lateral spectral slope" in result.output
    result = xbench("data", "info", "openi", "--root", openi_tree, "--on-error", "skip", "--realism")
    assert result.exit_code == 0, result.output
    assert "realism: cases measured" in result.output and "6 (per view" in result.output
