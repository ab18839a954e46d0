"""The digits data set, the three users' handwriting styles, and the prompts.

scikit-learn ships 1,797 8x8 handwritten digits (values 0..16). We upsample them to 16x16
(bilinear) and show them as grey-as-RGB images, white ink on black, in [0, 1]. A user's
"subject" in the DreamBooth sense is their handwriting style, made from the same digits by a
class-preserving geometric change that shapes the whole glyph (so it is decided in the early
and middle denoising steps, as the paper's dog breeds are):

- ``italic``: slanted right (shear);
- ``bold``: thick strokes (grey dilation);
- ``small``: the glyph shrunk to about 60 % and centred.
"""

from __future__ import annotations

import re

import numpy as np

IMAGE_SIZE = 16
STYLES = ("italic", "bold", "small")
# DreamBooth identifiers: rare byte strings bound to each user's style
IDENTIFIERS = {"italic": "sks", "bold": "zwx", "small": "vkq"}
PROMPT = "a handwritten digit {digit}"


def class_prompt(digit: int) -> str:
    return PROMPT.format(digit=digit)


def personal_prompt(prompt: str, identifier: str | None) -> str:
    """The personalized prompt p+ of a user: the shared prompt plus the user's identifier."""
    return prompt if not identifier else f"{prompt} in {identifier} style"


def prompt_digit(prompt: str) -> int:
    """The conditioning class of a digit prompt: its last decimal digit character."""
    found = re.findall(r"\d", prompt)
    if not found:
        raise ValueError(f"prompt {prompt!r} names no digit 0-9, so the digit classifier cannot score it")
    return int(found[-1])


def load_digits_16() -> tuple[np.ndarray, np.ndarray]:
    """All digits as ``(n, 16, 16)`` float32 images in [0, 1] and their labels ``(n,)``."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    big = zoom(images, (1, IMAGE_SIZE / 8, IMAGE_SIZE / 8), order=1)
    return np.clip(big, 0.0, 1.0).astype(np.float32), digits.target.astype(np.int64)


def apply_style(images: np.ndarray, style: str) -> np.ndarray:
    """``images`` ``(n, 16, 16)`` in [0, 1] drawn in ``style``."""
    from scipy import ndimage

    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLES)}")
    out = np.empty_like(images)
    centre = (IMAGE_SIZE - 1) / 2
    for i, image in enumerate(images):
        if style == "italic":
            # output (r, c) samples input (r, c + s (r - centre)): the top leans right
            shear = 0.45
            matrix = np.array([[1.0, 0.0], [shear, 1.0]])
            offset = np.array([0.0, -shear * centre])
            out[i] = ndimage.affine_transform(image, matrix, offset=offset, order=1)
        elif style == "bold":
            out[i] = ndimage.grey_dilation(image, size=(2, 2))
        else:
            scale = 0.6
            matrix = np.eye(2) / scale
            offset = centre - matrix @ np.array([centre, centre])
            out[i] = ndimage.affine_transform(image, matrix, offset=offset, order=1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """``(n, 16, 16)`` in [0, 1] -> ``(n, 3, 16, 16)`` in [-1, 1], the VAE's input range."""
    return np.repeat(images[:, None] * 2.0 - 1.0, 3, axis=1).astype(np.float32)


def to_gray(images: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(n, H, W, 3)`` (what ``DiffusionModel.decode`` returns) -> ``(n, H, W)`` in [0, 1]."""
    return np.asarray(images, dtype=np.float32).mean(axis=-1) / 255.0
