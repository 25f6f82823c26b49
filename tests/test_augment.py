"""Augmentation inside the train step: seeded, independent per image, and never at evaluation."""

import jax
import numpy as np

from relrank.configs import make_config
from relrank.train.augment import augment, enabled


def ramp_images(n=6, size=40):
    """Image i: red = column index, green = row index, blue = 10 * i."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([np.stack([x, y, np.full_like(x, 10 * i)], -1) for i in range(n)]).astype(np.uint8)


def test_augmentation_is_seeded_and_independent_per_image():
    config = make_config(crop_min_scale=0.5, flip=True, color_jitter=0.2, load_size=40)
    images = np.repeat(ramp_images(1), 6, axis=0)  # six copies of one image
    out = np.asarray(augment(jax.random.key(0), images, 32, config))
    assert out.shape == (6, 32, 32, 3) and out.min() >= 0 and out.max() <= 255
    np.testing.assert_array_equal(out, np.asarray(augment(jax.random.key(0), images, 32, config)))
    assert not np.allclose(out, np.asarray(augment(jax.random.key(1), images, 32, config)))
    assert len({out[i].tobytes() for i in range(6)}) == 6  # each copy cropped, flipped and jittered on its own


def test_crops_keep_the_geometry_and_flips_mirror():
    images = ramp_images(32)
    crops = np.asarray(augment(jax.random.key(2), images, 32, make_config(crop_min_scale=0.3, load_size=40)))
    red, green = crops[..., 0], crops[..., 1]
    assert np.all(np.diff(red, axis=2) >= -1e-3) and np.all(np.diff(green, axis=1) >= -1e-3)  # no flips, no transposes
    np.testing.assert_allclose(red, red[:, :1, :].repeat(32, 1), atol=1e-3)  # a crop of a column ramp is a column ramp
    widths = red[:, 0, -1] - red[:, 0, 0]
    assert widths.min() < 30 < widths.max() <= 39 + 1e-3  # crops of different sizes, inside the image
    np.testing.assert_allclose(crops[..., 2], images[:, :32, :32, 2].astype(np.float32), atol=1e-3)  # colour kept

    flipped = np.asarray(augment(jax.random.key(3), images[:, :32, :32], 32, make_config(flip=True)))
    same = [np.array_equal(f, i) for f, i in zip(flipped, images[:, :32, :32])]
    mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images[:, :32, :32])]
    assert all(s or m for s, m in zip(same, mirrored)) and 5 < sum(mirrored) < 27


def test_off_by_default():
    assert not enabled(make_config()) and enabled(make_config(load_size=64)) and enabled(make_config(flip=True))
