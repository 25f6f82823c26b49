"""Saliency of a comparison (paper section 4.6): where in each image the decision 'a shows more than b' comes from.

The map is d P(a > b) / d pixel for both images, computed with jax.grad through
the preprocessing and the network, then the maximum |gradient| over the colour
channels, smoothed with a Gaussian and scaled to [0, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import gaussian_filter

from relrank.losses import pair_probability
from relrank.network import scores
from relrank.ranker import Ranker


def pair_saliency(ranker: Ranker, image_a, image_b, sigma: float = 3.0,
                  attr: str | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """P(a shows more `attr` than b) and one saliency map per image ([S, S] in [0, 1], S = the model's image size).

    `attr` picks the output of a multi-attribute ranker (default: the ranker's only attribute).
    """
    pixels = jnp.asarray(ranker.prepare([image_a, image_b]), jnp.float32)
    column = ranker.output(attr)

    def probability(x):
        r = scores(ranker.network, ranker.params, x)[:, column]
        return pair_probability(r[0], r[1])

    p, grads = jax.value_and_grad(probability)(pixels)
    maps = []
    for grad in np.asarray(grads):
        smoothed = gaussian_filter(np.abs(grad).max(axis=-1), sigma)
        maps.append(smoothed / smoothed.max() if smoothed.max() > 0 else smoothed)
    return float(p), maps[0], maps[1]
