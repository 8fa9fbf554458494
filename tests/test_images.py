"""The one image pipeline: reading, resizing, histogram equalisation, conversion, atomic writes."""

import numpy as np
import pytest
from PIL import Image

from benchmark.core.errors import XbenchError
from benchmark.data.images import Pipeline, equalize_hist, read_gray, resize, save_png, to_uint8


def test_equalize_matches_opencv_bit_for_bit():
    cv2 = pytest.importorskip("cv2")  # an independent implementation of the same mapping
    rng = np.random.default_rng(0)
    for _ in range(200):
        scale, offset = rng.integers(5, 256), rng.integers(0, 40)
        image = (rng.beta(2, 5, (48, 40)) * scale + offset).clip(0, 255).astype(np.uint8)
        np.testing.assert_array_equal(equalize_hist(image), cv2.equalizeHist(image))
    constant = np.full((5, 5), 9, np.uint8)
    np.testing.assert_array_equal(equalize_hist(constant), cv2.equalizeHist(constant))


def test_equalize_flattens_the_histogram():
    image = np.random.default_rng(1).beta(8, 2, (128, 128)).__mul__(255).astype(np.uint8)
    out = equalize_hist(image)
    assert out.min() == 0 and out.max() == 255
    assert abs(out.mean() - 127.5) < 4 < abs(image.mean() - 127.5)


def test_bicubic_resize_is_antialiased():
    checker = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)  # 1-px checkerboard
    small = resize(checker, 32)
    assert small.shape == (32, 32) and abs(small.astype(float).mean() - 127.5) < 2 and small.std() < 2
    nearest = resize(checker, 32, mode="nearest")
    assert set(np.unique(nearest)) <= {0, 255}  # aliasing: what the official targets do


def test_pipeline_resizes_then_equalizes():
    image = np.random.default_rng(2).integers(60, 120, (300, 250), dtype=np.uint8)
    out = Pipeline(size=64)(image)
    assert out.shape == (64, 64) and out.dtype == np.uint8 and out.max() == 255
    np.testing.assert_array_equal(Pipeline(size=64, equalize=False)(image), resize(image, 64))


def test_read_gray_formats_and_errors(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert read_gray(tmp_path / "rgb.png").shape == (4, 6)
    deep = np.arange(24, dtype=np.uint16).reshape(4, 6) * 1000
    Image.fromarray(deep).save(tmp_path / "deep.png")
    out = read_gray(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255  # full 16-bit range kept

    with pytest.raises(XbenchError, match=r"missing image .*nope\.png"):
        read_gray(tmp_path / "nope.png")
    good = (tmp_path / "rgb.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(XbenchError, match=r"corrupt image .*cut\.png"):
        read_gray(tmp_path / "cut.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(XbenchError, match=r"corrupt image .*text\.png"):
        read_gray(tmp_path / "text.png")


def test_to_uint8_and_save_png_round_trip(tmp_path):
    fake = np.linspace(-1.5, 1.5, 64, dtype=np.float32).reshape(8, 8)
    out = to_uint8(fake)
    assert out.min() == 0 and out.max() == 255 and out[0, 0] == 0
    save_png(out, tmp_path / "a" / "x.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "a" / "x.png"), out)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.png"]  # no temp file left
