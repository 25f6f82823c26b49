"""RankNet pairwise loss and the L2 weight penalty of the paper."""

from __future__ import annotations

import jax
import jax.numpy as jnp

PROBABILITY_CLIP = 1e-7


def pair_probability(score_a: jax.Array, score_b: jax.Array) -> jax.Array:
    """P(a shows more of the attribute than b) = sigmoid(r_a - r_b), clipped as in the paper."""
    p = jax.nn.sigmoid(score_a - score_b)
    return jnp.clip(p, PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)


def ranknet_loss(score_a: jax.Array, score_b: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    """Weighted mean binary cross-entropy between P(a > b) and targets in {0, 0.5, 1}, over all entries.

    Scores, targets and weights are [pairs] or [pairs, attributes]. `weight` is 1 for annotated
    pairs and 0 for the padding that fills a last, partial batch and for attributes a pair is not
    annotated for, so neither changes the loss: with several attributes it is the mean over the
    annotated (pair, attribute) entries.
    """
    p = pair_probability(score_a, score_b)
    bce = -(target * jnp.log(p) + (1.0 - target) * jnp.log1p(-p))
    return jnp.sum(weight * bce) / jnp.maximum(jnp.sum(weight), 1.0)


def l2_penalty(params) -> jax.Array:
    """Sum of squared weights (kernels), biases excluded, as Lasagne's `regularize_network_params`."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum(jnp.sum(jnp.square(leaf)) for path, leaf in leaves if path[-1].key == "kernel")
