"""Training-time augmentation, on device inside the jitted step (scoring and evaluation never augment).

Each image of a batch, both members of a pair independently, gets:
  a random resized crop: a region of `crop_min_scale`..1 of the stored image's
    area, aspect ratio 3/4..4/3, resized to the model's input size;
  a horizontal flip with probability 1/2 (`flip`);
  brightness and contrast factors in 1 +- `color_jitter`.
Everything is drawn from the step's key, so a run and its resumed copy see the
same augmentations. A run on cached features or activations may flip only: each
image's two views are cached, and `pick_views` draws one per image.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

ASPECT_RATIOS = (3 / 4, 4 / 3)


def enabled(config) -> bool:
    """Whether training images go through `augment` (also when they are stored larger than the input)."""
    return config.crop_min_scale < 1 or config.flip or config.color_jitter > 0 or train_size(config) != config.image_size


def only_flips(config) -> bool:
    """Whether training images are augmented by flips at most (what runs on cached inputs can do)."""
    return config.crop_min_scale == 1 and config.color_jitter == 0 and train_size(config) == config.image_size


def train_size(config) -> int:
    """The side training images are stored at: `load_size`, or the model's input size."""
    return config.load_size or config.image_size


def _crop_and_resize(key: jax.Array, image: jax.Array, size: int, min_scale: float) -> jax.Array:
    height, width = image.shape[0], image.shape[1]
    area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
    area = jax.random.uniform(area_key, (), minval=min_scale, maxval=1.0)
    log_ratio = jax.random.uniform(ratio_key, (), minval=math.log(ASPECT_RATIOS[0]), maxval=math.log(ASPECT_RATIOS[1]))
    ratio = jnp.exp(log_ratio)
    crop_h = jnp.minimum(jnp.sqrt(area / ratio), 1.0) * height
    crop_w = jnp.minimum(jnp.sqrt(area * ratio), 1.0) * width
    top = jax.random.uniform(y_key, ()) * (height - crop_h)
    left = jax.random.uniform(x_key, ()) * (width - crop_w)
    scale = jnp.stack([size / crop_h, size / crop_w])
    return jax.image.scale_and_translate(image, (size, size, image.shape[2]), (0, 1), scale,
                                         -jnp.stack([top, left]) * scale, method="linear")


def _jitter(key: jax.Array, image: jax.Array, strength: float) -> jax.Array:
    brightness, contrast = jax.random.uniform(key, (2,), minval=1 - strength, maxval=1 + strength)
    mean = jnp.mean(image)
    return jnp.clip(((image - mean) * contrast + mean) * brightness, 0.0, 255.0)


def augment(key: jax.Array, images: jax.Array, size: int, config) -> jax.Array:
    """uint8 images [N, L, L, 3] -> float32 pixel values [N, size, size, 3] in 0..255, augmented."""
    keys = jax.random.split(key, images.shape[0])

    def one(image_key, image):
        crop_key, flip_key, jitter_key = jax.random.split(image_key, 3)
        x = image.astype(jnp.float32)
        if config.crop_min_scale < 1:
            x = _crop_and_resize(crop_key, x, size, config.crop_min_scale)
        elif x.shape[0] != size:
            x = jax.image.resize(x, (size, size, x.shape[2]), method="linear")
        if config.flip:
            x = jnp.where(jax.random.bernoulli(flip_key), x[:, ::-1], x)
        if config.color_jitter > 0:
            x = _jitter(jitter_key, x, config.color_jitter)
        return x

    return jax.vmap(one)(keys, images)


def pick_views(key: jax.Array, views: jax.Array) -> jax.Array:
    """One of each image's cached views [N, V, ...] -> [N, ...], drawn uniformly (the image or its mirror)."""
    picked = jax.random.randint(key, (views.shape[0],), 0, views.shape[1])
    return jnp.take_along_axis(views, picked.reshape((-1,) + (1,) * (views.ndim - 1)), axis=1)[:, 0]
