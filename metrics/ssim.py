"""``ssim``: paired SSIM of each generated image with its case's ground truth, per view.

Wang et al. 2004 settings through scikit-image ``structural_similarity`` (pinned; changing any of them is a new
metric name): images divided by 255 into [0, 1], ``data_range=1.0``, Gaussian weights with sigma 1.5 and an
11x11 window, K1 0.01, K2 0.03, population covariance (``use_sample_covariance=False``); the mean SSIM map
per image. XRayGAN's own SSIM ran on ImageNet-normalised tensors and skimage's default is a 7x7 uniform
window: both give other numbers.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from skimage.metrics import structural_similarity

from benchmark.core.errors import XbenchError

SSIM_SETTINGS = dict(
    data_range=1.0, gaussian_weights=True, sigma=1.5, win_size=11, K1=0.01, K2=0.03, use_sample_covariance=False
)


def _one(pair: tuple[np.ndarray, np.ndarray]) -> float:
    fake, real = pair
    return float(structural_similarity(fake / 255.0, real / 255.0, **SSIM_SETTINGS))


def ssim_scores(fake: np.ndarray, real: np.ndarray, workers: int = 2) -> np.ndarray:
    """Per-case SSIM, float64 [N]. fake, real: uint8 [N, H, W] in the same case order."""
    if fake.dtype != np.uint8 or real.dtype != np.uint8 or fake.ndim != 3 or fake.shape != real.shape:
        raise XbenchError(
            f"ssim needs two uint8 [N, H, W] arrays of one shape, got {fake.dtype}{fake.shape} and "
            f"{real.dtype}{real.shape}"
        )
    if min(fake.shape[1:]) < SSIM_SETTINGS["win_size"]:
        raise XbenchError(f"ssim needs images of at least 11x11 px (the window), not {fake.shape[1:]}")
    # scipy's Gaussian filter releases the GIL: threads give a near-linear speed-up.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return np.fromiter(pool.map(_one, zip(fake, real)), dtype=np.float64, count=len(fake))
