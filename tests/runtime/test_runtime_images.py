"""Images a person can see: whole-factor nearest-neighbour enlarging and captioned grids."""

from __future__ import annotations

import numpy as np
import pytest

from edgediff.runtime.images import VIEW_PX, enlarge, labelled_grid


def digits(n: int, size: int = 16) -> list:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_enlarge_repeats_each_pixel_and_keeps_large_images():
    small = digits(1)[0]
    big = np.asarray(enlarge(small))
    assert big.shape == (VIEW_PX, VIEW_PX, 3)
    assert np.array_equal(big, np.kron(small, np.ones((16, 16, 1), dtype=np.uint8)))
    assert np.asarray(enlarge(np.zeros((10, 20, 3), np.uint8))).shape == (130, 260, 3)  # ceil(256 / 20) = 13
    assert np.asarray(enlarge(np.zeros((512, 512, 3), np.uint8))).shape == (512, 512, 3)


def caption_band(grid, tile_px: int = 128) -> np.ndarray:
    """Grey levels between the first tile's bottom and the first row's end."""
    g = np.asarray(grid.convert("L"))
    rows = 2
    return g[tile_px + 8 : g.shape[0] // rows]


def test_grid_tiles_are_captioned_with_their_labels():
    images = digits(8)
    labels = [(f"u{i}, device {i + 1}x", "granted: split 10" if i % 2 else "denied: all local") for i in range(8)]
    grid = labelled_grid(images, labels)
    assert grid.width > 4 * 128 and grid.height > 2 * 128
    assert (caption_band(grid) < 100).any()  # dark text on white
    blank = labelled_grid(images, [("", "")] * 8)
    assert blank.size == grid.size and (caption_band(blank) == 255).all()
    other = labelled_grid(images, [(f"u{i}, device {i + 1}x", "denied: all local") for i in range(8)])
    assert not np.array_equal(np.asarray(other), np.asarray(grid))  # the decision is drawn, not only the user
    # the tiles themselves are the enlarged images, untouched by the captions
    tile = np.asarray(grid)[4 : 4 + 128, 4 : 4 + 128]
    assert np.array_equal(tile, np.asarray(enlarge(images[0], 128)))


def test_grid_needs_one_label_per_image():
    with pytest.raises(ValueError, match="8 images but 7 labels"):
        labelled_grid(digits(8), [("x",)] * 7)
