"""Image preprocessing: host-side decode/resize to uint8, device-side normalisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from relrank.config import Preprocessing


def to_uint8_rgb(image, size: int) -> np.ndarray:
    """Any PIL image or array (grayscale, RGBA, any size) -> uint8 [size, size, 3] RGB.

    Images are resized directly to a square (no crop), as in the original code.
    """
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image array, got dtype {array.dtype}")
        image = Image.fromarray(array)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def normalize(images: jax.Array, prep: Preprocessing, dtype=jnp.float32) -> jax.Array:
    """uint8 RGB [..., 3] -> network input, following the weights' preprocessing."""
    x = images.astype(jnp.float32)
    if prep.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x * prep.scale - jnp.asarray(prep.mean)) / jnp.asarray(prep.std)
    return x.astype(dtype)
