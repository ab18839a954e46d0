"""Images a person can look at: small model outputs enlarged, grids of labelled tiles.

The embedded ``tiny`` models draw 16x16 digits, a few millimetres on a screen. Enlarging is
by a whole factor with nearest-neighbour sampling, so every model pixel stays one sharp
square of equal colour and nothing is invented; an image already ``min_px`` wide is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: the side, in pixels, ``generate`` enlarges an image to at least (``--native-size`` keeps it)
VIEW_PX = 256


def enlarge(image, min_px: int = VIEW_PX):
    """uint8 ``(H, W, 3)`` -> a PIL image enlarged by the smallest whole factor that makes its
    longer side at least ``min_px`` (nearest neighbour; factor 1 when already that large)."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = max(1, -(-min_px // max(h, w)))
    return Image.fromarray(image).resize((w * scale, h * scale), Image.NEAREST)


def labelled_grid(images: Sequence, labels: Sequence[Sequence[str]], columns: int = 4, tile_px: int = 128):
    """uint8 ``(H, W, 3)`` images -> one PIL image, ``columns`` tiles wide, each enlarged to
    at least ``tile_px`` and captioned below with its lines of ``labels``."""
    from PIL import Image, ImageDraw, ImageFont

    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    tiles = [enlarge(image, tile_px) for image in images]
    font_px = max(10, tile_px // 10)
    font = ImageFont.load_default(size=font_px)
    lines = max((len(label) for label in labels), default=0)
    pad = font_px // 3
    tile_w = max(t.width for t in tiles)
    cell_w = tile_w + 2 * pad
    cell_h = max(t.height for t in tiles) + pad + lines * (font_px + pad) + pad
    rows = -(-len(tiles) // columns)
    grid = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        x, y = (i % columns) * cell_w + pad, (i // columns) * cell_h + pad
        grid.paste(tile, (x, y))
        for j, line in enumerate(label):
            draw.text((x, y + tile.height + pad + j * (font_px + pad)), line, fill="black", font=font)
    return grid


def save_image(image, out, native: bool = False) -> str:
    """Write ``image`` to ``out`` (enlarged to a viewable size unless ``native``); return what
    was written. An unwritable path is one :class:`~edgediff.errors.InputError`."""
    from PIL import Image

    from edgediff.errors import InputError

    picture = Image.fromarray(image) if native else enlarge(image)
    try:
        picture.save(out)
    except OSError as err:
        raise InputError(f"cannot write {str(out)!r}: {err.strerror or err}") from None
    h, w = image.shape[:2]
    size = f"{picture.width}x{picture.height}"
    return size if picture.width == w else f"{size} (the model's {w}x{h}, enlarged {picture.width // w}x)"


def image_path(out: Path, images: int, index: int) -> Path:
    """Where image ``index`` (from 0) of ``images`` goes: ``out`` itself for one image, else
    ``OUT-1.png``, ``OUT-2.png``, ... (``generate --images``, in-process and over HTTP alike)."""
    return out if images == 1 else out.with_name(f"{out.stem}-{index + 1}.png")
