"""What every backbone shares: its initialisers and the linear ranking layer on its feature."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def he_normal(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """N(0, 2 / fan_in) with fan_in = product of all but the last axis (He et al., 2015).

    Sampled as a flat vector and reshaped: XLA:CPU compiles N-d threefry draws very slowly.
    """
    fan_in = math.prod(shape[:-1])
    return (jax.random.normal(key, (math.prod(shape),), dtype) * math.sqrt(2.0 / fan_in)).reshape(shape)


def glorot_uniform(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """U(-l, l) with l = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    limit = math.sqrt(6.0 / (math.prod(shape[:-1]) + shape[-1]))
    return jax.random.uniform(key, (math.prod(shape),), dtype, -limit, limit).reshape(shape)


def ranking_head(features: int, outputs: int, zero: bool, rngs: nnx.Rngs, dtype=jnp.float32) -> nnx.Linear:
    """r = W . feature + b, one output per attribute: Glorot-uniform, or zero (all scores equal) with `zero`."""
    return nnx.Linear(features, outputs, kernel_init=nnx.initializers.zeros if zero else glorot_uniform,
                      bias_init=nnx.initializers.zeros, dtype=dtype, rngs=rngs)


class Affine(nnx.Module):
    """A frozen BatchNorm: y = x * scale + bias per channel."""

    def __init__(self, channels: int):
        self.scale = nnx.Param(jnp.ones((channels,)))
        self.bias = nnx.Param(jnp.zeros((channels,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)


class RankingLayer(nnx.Module):
    """Dropout on a backbone's feature (when training), then the ranking layer: the part of a network that
    learns when its backbone is frozen, also used alone on cached features."""

    def __init__(self, features: int, outputs: int, dropout: float, zero: bool, rngs: nnx.Rngs, dtype=jnp.float32):
        self.dropout = nnx.Dropout(dropout)
        self.head = ranking_head(features, outputs, zero, rngs, dtype)

    def __call__(self, feature: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        feature = self.dropout(feature, deterministic=dropout_key is None, rngs=dropout_key)
        return self.head(feature).astype(jnp.float32)


class RankedBackbone(nnx.Module):
    """Base of the backbones with a fixed topology: `features(x)`, then dropout (when training) and the ranking
    layer `head`, which subclasses create as `self.dropout` and `self.head`."""

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """r(x): the ranking scores of each image, [N, outputs], float32."""
        return self.rank(self.features(x), dropout_key=dropout_key)

    def rank(self, feature: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """The ranking scores [N, outputs] (float32) of features [N, D]: dropout (when training), the head."""
        feature = self.dropout(feature, deterministic=dropout_key is None, rngs=dropout_key)
        return self.head(feature).astype(jnp.float32)
