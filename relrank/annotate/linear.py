"""The annotation tool's ranker: a linear RankNet on fixed image features (the paper's ranking layer on a
frozen backbone), refitted in a fraction of a second as answers come in, starting from the last fit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from relrank.data.pairs import Pairs
from relrank.evaluation.accuracy import pair_accuracy
from relrank.model.losses import ranknet_loss

STEPS = 150  # Adam steps per fit (from the last fit's weights)
LEARNING_RATE = 0.05
L2 = 1e-3  # on the weights of standardised features
MIN_PAIRS_BUCKET = 64  # pairs are padded to a power of two at least this: a few shapes, each compiled once


@functools.partial(jax.jit, static_argnames="steps")
def _fit(w, features, a, b, target, weight, steps):
    optimiser = optax.adam(LEARNING_RATE)

    def loss(w):
        scores = features @ w
        return ranknet_loss(scores[a], scores[b], target, weight) + L2 * jnp.sum(w * w)

    def step(_, carry):
        w, state = carry
        updates, state = optimiser.update(jax.grad(loss)(w), state)
        return optax.apply_updates(w, updates), state

    return jax.lax.fori_loop(0, steps, step, (w, optimiser.init(w)))[0]


class LinearRanker:
    """r(image) = w . feature(image) over a fixed set of images, fitted to pairs of their indices."""

    def __init__(self, features: np.ndarray):
        self.mean, self.scale = features.mean(axis=0), (features.std(axis=0) + 1e-6) * np.sqrt(features.shape[1])
        self.features = jnp.asarray(self.standardise(features))
        self.w = jnp.zeros(self.features.shape[1], jnp.float32)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """Zero mean and unit variance per dimension (over the ranker's images), over sqrt(D): scores of order 1."""
        return ((features - self.mean) / self.scale).astype(np.float32)

    def fit(self, pairs: Pairs, steps: int = STEPS) -> None:
        """Refit from the current weights to `pairs` (indices into the images; targets 1, 0 or 0.5)."""
        if len(pairs) == 0:
            return
        size = max(MIN_PAIRS_BUCKET, 1 << (len(pairs) - 1).bit_length())
        pad = size - len(pairs)
        padded = [np.concatenate([np.asarray(x), np.zeros(pad, np.asarray(x).dtype)]) for x in (pairs.a, pairs.b)]
        target = np.concatenate([pairs.target, np.full(pad, 0.5)]).astype(np.float32)
        weight = np.concatenate([np.ones(len(pairs)), np.zeros(pad)]).astype(np.float32)
        self.w = _fit(self.w, self.features, *padded, target, weight, steps)

    def scores(self, features: np.ndarray | None = None) -> np.ndarray:
        """r of every image (or of other images' `features`)."""
        table = self.features if features is None else jnp.asarray(self.standardise(features))
        return np.asarray(table @ self.w)

    def accuracy(self, pairs: Pairs) -> float:
        """The paper's metric on `pairs` (percent; ties skipped; nan without a non-tie pair)."""
        return pair_accuracy(self.scores(), pairs)
