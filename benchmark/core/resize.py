"""Resizing uint8 image batches once, onto the device where they are used (training sets, evaluators)."""

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.errors import XbenchError


def resident_images(
    pixels: np.ndarray | torch.Tensor, size: int, device: torch.device | str, chunk: int = 256
) -> torch.Tensor:
    """uint8 [N, 2, H, W] -> uint8 [N, 2, size, size] on the device, resized (bicubic, antialiased) once.

    Chunked, so a float copy of the whole set never exists; kept as uint8 (4x smaller than float). Square
    images only: resizing a non-square film to a square would squash the anatomy without a word.
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
        if x.shape[-1] != size:
            x = F.interpolate(x.float(), size=(size, size), mode="bicubic", antialias=True).round_().clamp_(0, 255)
        out[start : start + chunk] = x.to(torch.uint8)
    return out
