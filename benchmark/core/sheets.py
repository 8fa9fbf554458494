"""Contact sheets: rows of grayscale images with a text panel, for a person to look at."""

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmark.core.io import atomic_write

_PAD = 6


def contact_sheet(
    rows: Sequence[tuple[Sequence[np.ndarray], str]],
    *,
    text_width_px: int = 420,
    header: Sequence[tuple[str, int]] = (),
    min_tile: int = 0,
) -> Image.Image:
    """One row per entry: its uint8 images side by side, then its text wrapped to ``text_width_px``.

    ``header``: (label, number of image columns it spans) written once above the columns; ``min_tile``: the
    least size (px) an image is shown at (small images are enlarged, bicubic)."""
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    tile = max(min_tile, max(im.shape[0] for images, _ in rows for im in images))
    per_row = max(len(images) for images, _ in rows)
    font = ImageFont.load_default(size=max(10, tile // 18))
    chars = max(20, text_width_px // max(1, int(font.getlength("x"))))
    top = font.size + 2 * _PAD if header else 0
    width = _PAD + per_row * (tile + _PAD) + text_width_px + _PAD
    sheet = Image.new("L", (width, top + _PAD + len(rows) * (tile + _PAD)), color=24)
    draw = ImageDraw.Draw(sheet)
    column = 0
    for label, span in header:
        x = _PAD + column * (tile + _PAD)
        draw.text((x, _PAD), label, fill=235, font=font)
        column += span
    for r, (images, text) in enumerate(rows):
        y = top + _PAD + r * (tile + _PAD)
        for c, im in enumerate(images):
            tile_img = Image.fromarray(np.ascontiguousarray(im, dtype=np.uint8))
            tile_img = tile_img.resize((tile, tile), Image.Resampling.BICUBIC)
            sheet.paste(tile_img, (_PAD + c * (tile + _PAD), y))
        lines = [w for para in text.splitlines() for w in textwrap.wrap(para, chars) or [""]]
        lines = lines[: max(1, tile // (font.size + 4))]  # what fits beside the images
        draw.multiline_text((_PAD + per_row * (tile + _PAD), y), "\n".join(lines), fill=235, font=font)
    return sheet


def save_sheet(sheet: Image.Image, path: Path) -> Path:
    """Write atomically, so a failed run leaves no half-written sheet."""
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
    return path
