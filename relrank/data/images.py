"""The one way relrank turns an image into pixels: any file, mode or array -> uint8 RGB.

Training, evaluation, scoring and saliency all decode through `to_uint8_rgb`,
and the dataset builders check every image with `decode` when they prepare,
so an image gives the same pixels wherever it is used. The rules:

  EXIF orientation    applied (a photo is used the way it is shown)
  P, L, 1, CMYK, ...  converted to RGB by PIL
  alpha (RGBA, LA, PA, P with transparency)
                      composited onto white
  I;16*, I            16-bit values, scaled to 0-255 (value / 257)
  F                   floats in [0, 1] scaled to 0-255; any other range taken as 0-255
  arrays              [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (RGBA), uint8 or float (as mode F: [0, 1]
                      scaled to 0-255, any other range taken as 0-255)

Images are then resized directly to a square (no crop), as in the original code.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from relrank.errors import UserError

BACKGROUND = (255, 255, 255)
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")  # found in folders


class ImageDecodeError(UserError, ValueError):
    """An image that cannot be read; the message names it and says why, in one line."""


def open_image(source, name: str = "") -> Image.Image:
    """A loaded PIL image from a path, encoded bytes or a PIL image (decompression bombs refused).

    `name` is how errors refer to the image (default: its path, or "image").
    """
    if isinstance(source, Image.Image):
        return source
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)) and not hasattr(source, "read"):
        raise ImageDecodeError(f"cannot read a {type(source).__name__} as an image: give a path, encoded bytes, "
                               f"a PIL image or an array")
    name = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "image")
    if isinstance(source, (str, os.PathLike)) and os.path.exists(source) and not os.path.isfile(source):
        what = "a folder" if os.path.isdir(source) else "not a regular file (a pipe, socket or device)"
        raise ImageDecodeError(f"cannot read image {name}: it is {what}")
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
            image.load()
        return image
    except Image.DecompressionBombError:
        raise ImageDecodeError(
            f"cannot read image {name}: too many pixels to decode safely (PIL's decompression-bomb limit is "
            f"{2 * Image.MAX_IMAGE_PIXELS:,}; raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file)"
        ) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"cannot read image {name}: not an image file PIL can decode") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        why = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ImageDecodeError(f"cannot read image {name}: {why}") from None


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels -> uint8: values in [0, 1] are scaled to 0-255, any other range is taken as 0-255."""
    values = np.asarray(pixels, np.float64)
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() >= 0 and finite.max() <= 1:
        values = values * 255.0
    return np.rint(np.clip(np.nan_to_num(values), 0, 255)).astype(np.uint8)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype.kind == "f":
        array = to_uint8(array)
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"expected a uint8 or float image array, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return Image.fromarray(array, "L")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(array), "RGB" if array.shape[-1] == 3 else "RGBA")
    raise ImageDecodeError(f"expected an image array [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")


def _high_depth_to_uint8(image: Image.Image) -> Image.Image:
    values = np.asarray(image)
    if image.mode == "F":
        return Image.fromarray(to_uint8(values), "L")
    gray = np.clip(values.astype(np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.rint(gray).astype(np.uint8), "L")


def decode(source, name: str = "") -> Image.Image:
    """An RGB PIL image from a path, encoded bytes, a PIL image or a uint8 array (see the module's rules)."""
    image = _from_array(source) if isinstance(source, np.ndarray) else open_image(source, name)
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "F":
        image = _high_depth_to_uint8(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def to_uint8_rgb(source, size: int) -> np.ndarray:
    """Any image (path, bytes, PIL image or uint8 array) -> uint8 [size, size, 3] RGB."""
    image = decode(source)
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
