"""Pixel conventions shared by methods and metrics: uint8 images resized once on the device, [-1, 1] floats."""

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import XbenchError


def to_unit_range(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [...] -> float32 in [-1, 1] (the methods' convention)."""
    return torch.as_tensor(pixels).float().div_(127.5).sub_(1.0)


def resident_images(
    pixels: np.ndarray | torch.Tensor, size: int, device: torch.device | str, chunk: int = 256
) -> torch.Tensor:
    """uint8 [N, 2, H, W] -> uint8 [N, 2, size, size] on the device, resized (bicubic, antialiased) once.

    Chunked, so a float copy of the whole set never exists; kept as uint8 (4x smaller than float).
    Non-square images are refused: a square resize would squash them and change what every network sees.
    """
    if pixels.ndim != 4 or pixels.shape[1] != 2 or pixels.dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"pixels must be uint8 [N, 2, H, W], not {pixels.dtype} {tuple(pixels.shape)}")
    if pixels.shape[-1] != pixels.shape[-2]:
        raise XbenchError(
            f"images are {pixels.shape[-2]}x{pixels.shape[-1]} px (height x width), not square: a square resize "
            "would squash them; pass square images (the image pipeline makes them square)"
        )
    out = torch.empty((pixels.shape[0], 2, size, size), dtype=torch.uint8, device=device)
    for start in range(0, pixels.shape[0], chunk):
        x = torch.as_tensor(
            np.ascontiguousarray(pixels[start : start + chunk])
            if isinstance(pixels, np.ndarray)
            else pixels[start : start + chunk]
        ).to(device)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x.float(), size=(size, size), mode="bicubic", antialias=True).round_().clamp_(0, 255)
        out[start : start + chunk] = x.to(torch.uint8)
    return out
