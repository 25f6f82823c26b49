"""Device-side preprocessing: uint8 RGB pixels -> network input (decoding is `relrank.images`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from relrank.config import Preprocessing


def normalize(images: jax.Array, prep: Preprocessing, dtype=jnp.float32) -> jax.Array:
    """uint8 RGB [..., 3] -> network input, following the weights' preprocessing."""
    x = images.astype(jnp.float32)
    if prep.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x * prep.scale - jnp.asarray(prep.mean)) / jnp.asarray(prep.std)
    return x.astype(dtype)
