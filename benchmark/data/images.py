"""The one image pipeline, for real and generated images alike.

grayscale -> resize to the run's resolution (bicubic, antialiased) -> optional global histogram
equalisation (XRayGAN's preprocessing, ``cv2.equalizeHist``) -> uint8. Lower-resolution targets for the
progressive stages are resized on the device from that full-resolution uint8 copy
(``benchmark.core.resize.resident_images``, bicubic, antialiased). The official code squashes to a square (no
aspect kept) and downsamples targets with nearest neighbour; xbench squashes too, and resamples with
antialiasing (``resize(..., mode="nearest")`` shows what the official targets look like).
"""

import dataclasses
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from benchmark.core.errors import XbenchError
from benchmark.core.io import atomic_write

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """What turns a source image into a training/evaluation image; part of every cache key."""

    size: int = 256  # output side, px (square)
    equalize: bool = True  # global histogram equalisation, as the paper's code does
    version: int = 1  # bump when the pipeline's output changes

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = resize(image, self.size)
        return equalize_hist(out) if self.equalize else out


def read_gray(path: Path) -> np.ndarray:
    """An image file as 8-bit grayscale [H, W]; a missing or unreadable file is an XbenchError."""
    if not path.is_file():
        raise XbenchError(f"missing image {path}; check data.root or re-download the dataset")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I"):  # 16-bit grayscale: keep the full range
                arr = np.asarray(img, dtype=np.float64)
                lo, hi = arr.min(), arr.max()
                return np.round((arr - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8)
            return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise XbenchError(f"corrupt image {path} ({err}); replace the file or set data.on_error=skip") from None


def resize(image: np.ndarray, size: int, mode: str = "bicubic") -> np.ndarray:
    """uint8 [H, W] -> uint8 [size, size]; PIL's bicubic filter widens its support when shrinking (antialiased)."""
    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), _RESAMPLE[mode]), dtype=np.uint8)


def equalize_hist(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of a uint8 image, the same mapping as OpenCV's ``equalizeHist``."""
    hist = np.bincount(image.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    rest = image.size - hist[first]
    if rest == 0:  # a constant image maps to itself
        return image.copy()
    # float32 product and ties to even, exactly as OpenCV computes it, so the mapping matches bit for bit.
    lut = np.round((np.cumsum(hist) - hist[first]).astype(np.float32) * np.float32(255.0 / rest))
    lut[:first] = 0
    return np.clip(lut, 0, 255).astype(np.uint8)[image]


def to_uint8(images) -> np.ndarray:
    """Generated float images in [-1, 1] (any array-like, e.g. a CPU tensor) -> uint8 in [0, 255]."""
    arr = np.asarray(images, dtype=np.float32)
    return np.round((np.clip(arr, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def to_unit_range(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [...] -> float32 in [-1, 1] (the methods' convention)."""
    return torch.as_tensor(pixels).float().div_(127.5).sub_(1.0)


def save_png(image: np.ndarray, path: Path) -> None:
    """Write 8-bit grayscale PNG atomically (temp file + rename), so no half-written image is left."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
