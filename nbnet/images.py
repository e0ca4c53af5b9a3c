"""From an image file to a network input, prepared the way the training images were.

MNIST digits are white ink on black, scaled so the digit's longer side fills 20 of 28
pixels, and centred by centre of mass; the UCI digits fill their 8x8 frame (centring them
by centre of mass too matched their test set best). `fit_image`
does the same to any grayscale image: find the ink, crop it, scale it (area averaging
when shrinking), centre it, and return values in [0, 1] like the training inputs.
"""

import io
from pathlib import Path

import numpy as np

from .files import NUMPY_FILE_ERRORS

# A photo of a digit needs far fewer: larger images (or decompression bombs) are refused from
# their header, before their pixels are decoded (a 40-megapixel image is 320 MB as floats).
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 100 * 2 ** 20


class ImageError(Exception):
    """An image file cannot be read, or holds nothing that can be fitted to the model."""


def read_image(path):
    """A 2-D float array in [0, 1] (0 = black) from a PNG/JPEG/... file or a .npy array.

    A .npy file holds a 2-D array of gray levels, either floats in [0, 1] or integers 0..255.
    Colour images are converted to luminance; transparent pixels count as white paper.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:  # mapped, not read: its shape is checked before anything is allocated
            array = np.load(path, allow_pickle=False, mmap_mode="r")
        except FileNotFoundError:
            raise ImageError(f"{path}: no such file") from None
        except NUMPY_FILE_ERRORS as error:
            raise ImageError(f"{path}: cannot read as a .npy array ({type(error).__name__})") from None
        if array.ndim != 2 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ImageError(f"{path}: expected a 2-D array of gray levels, got shape {array.shape} of {array.dtype}")
        if array.size == 0:
            raise ImageError(f"{path}: holds no pixels (shape {array.shape})")
        if array.size > MAX_PIXELS:
            raise ImageError(f"{path}: {array.shape[0]}x{array.shape[1]} is more than {MAX_PIXELS:,} pixels")
        if np.iscomplexobj(array):
            raise ImageError(f"{path}: holds complex numbers, not gray levels")
        array = np.array(array, dtype=np.float64)
        if not np.all(np.isfinite(array)):
            raise ImageError(f"{path}: holds NaN or infinite values")
        if array.min() < 0 or array.max() > 255:
            raise ImageError(f"{path}: gray levels must lie in [0, 1] or 0..255")
        return array / 255.0 if array.max() > 1 else array
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"{path}: larger than {MAX_FILE_BYTES // 2 ** 20} MB")
        # Decoded from memory: a file object's read(n) allocates n bytes before it reads, and a
        # corrupt chunk length would ask Pillow for up to 4 GB of a 100-byte file.
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            if image.width * image.height > MAX_PIXELS:  # known from the header, before decoding
                raise ImageError(f"{path}: {image.width}x{image.height} is more than {MAX_PIXELS:,} pixels")
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = image.convert("RGBA")
                paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(paper, image)
            gray = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError,
            MemoryError) as error:
        raise ImageError(f"{path}: not a readable image ({type(error).__name__})") from None
    return gray


def fit_image(gray, image_shape, digit_fraction, invert=False):
    """The flattened network input for a grayscale image (1 = ink after optional inversion)."""
    from PIL import Image

    side_y, side_x = image_shape
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise ImageError(f"an image of {gray.shape} pixels cannot be fitted to {side_y}x{side_x}")
    ink = 1.0 - gray if invert else gray.astype(np.float64)
    low, high = float(ink.min()), float(ink.max())
    if high - low < 0.05:
        raise ImageError("the image is blank: no digit to fit")
    ink = (ink - low) / (high - low)  # background 0, strongest ink 1
    if np.mean(ink) > 0.5:
        raise ImageError("the image is mostly ink: is it dark on light? (use --invert)")
    rows = np.flatnonzero(ink.max(axis=1) > 0.05)
    cols = np.flatnonzero(ink.max(axis=0) > 0.05)
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    box = max(1, int(round(digit_fraction * min(side_y, side_x))))
    scale = box / max(crop.shape)
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    resample = Image.BOX if scale < 1 else Image.BILINEAR
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize((width, height), resample))
    small = np.clip(small, 0.0, 1.0)
    canvas = np.zeros((side_y, side_x))
    # the digit's centre of mass at the centre of the canvas (clamped so the digit stays inside)
    total = small.sum()
    centre_y = (small.sum(axis=1) @ np.arange(height)) / total if total else (height - 1) / 2
    centre_x = (small.sum(axis=0) @ np.arange(width)) / total if total else (width - 1) / 2
    top = int(np.clip(round((side_y - 1) / 2 - centre_y), 0, side_y - height))
    left = int(np.clip(round((side_x - 1) / 2 - centre_x), 0, side_x - width))
    canvas[top:top + height, left:left + width] = small
    return canvas.ravel()
