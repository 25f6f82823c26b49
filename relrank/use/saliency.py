"""Saliency of a comparison (paper section 4.6): where in each image the decision 'a shows more than b' comes from.

The map is d P(a > b) / d pixel for both images, computed with jax.grad through
the preprocessing and the network, then the maximum |gradient| over the colour
channels, smoothed with a Gaussian and scaled together to [0, 1] (1 = the
larger of the two maps' maxima), so the two maps can be compared.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import gaussian_filter

from relrank.errors import UserError
from relrank.model.losses import pair_probability
from relrank.model.network import scores
from relrank.use.ranker import Ranker


def pair_saliency(ranker: Ranker, image_a, image_b, sigma: float = 3.0,
                  attr: str | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """P(a shows more `attr` than b) and one saliency map per image ([S, S] in [0, 1] on one scale, S = the model's
    image size).

    `attr` picks the output of a multi-attribute ranker (default: the ranker's only attribute).
    """
    if not math.isfinite(sigma) or sigma < 0:
        raise UserError(f"sigma (the smoothing in pixels) must be a number >= 0, got {sigma}")
    pixels = jnp.asarray(ranker.prepare([image_a, image_b]), jnp.float32)
    column = ranker.output(attr)

    def probability(x):
        r = scores(ranker.network, ranker.params, x)[:, column]
        return pair_probability(r[0], r[1])

    p, grads = jax.value_and_grad(probability)(pixels)
    maps = np.stack([gaussian_filter(np.abs(grad).max(axis=-1), sigma) for grad in np.asarray(grads)])
    peak = maps.max()
    if peak > 0:
        maps = maps / peak  # one scale for both: the two maps can be compared
    return float(p), maps[0], maps[1]
