"""VGG-16 (Simonyan & Zisserman) and its narrower variants with a linear ranking head, in Flax NNX.

Layer names follow the Caffe / Lasagne model (conv1_1 .. conv5_3, fc6, fc7) so
that weight porters can address them; the ImageNet classifier (fc8) is absent
and `head` is the linear ranking layer r(x) = W . fc7(x) + b, one output per
attribute (Dense(1) for a single attribute, as in the paper).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from relrank.config import ModelSpec
from relrank.model.layers import he_normal, ranking_head


GROUPS = 8  # GroupNorm groups (fewer when a layer's width is not a multiple)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pooling, stride 2 (as a reshape + max: its gradient is ~3x faster than reduce_window's on CPU)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class VGG(nnx.Module):
    """VGG-style feature extractor (up to fc7) followed by a linear ranking layer with `outputs` scores.

    Input: float images [N, H, W, 3], already preprocessed, H = W = image_size.
    Call with `dropout_key` to train (dropout active), without it to score.
    """

    def __init__(self, spec: ModelSpec, image_size: int, *, rngs: nnx.Rngs, dtype=jnp.float32, outputs: int = 1):
        self.depths = spec.block_depths
        in_channels = 3
        for block, n_layers in enumerate(spec.block_depths):
            width = spec.block_widths[block]
            for i in range(n_layers):
                conv = nnx.Conv(
                    in_channels, width, (3, 3), padding="SAME", kernel_init=he_normal, dtype=dtype, rngs=rngs,
                )
                setattr(self, f"conv{block + 1}_{i + 1}", conv)
                if spec.norm == "group":
                    norm = nnx.GroupNorm(width, num_groups=math.gcd(width, GROUPS), dtype=dtype, rngs=rngs)
                    setattr(self, f"norm{block + 1}_{i + 1}", norm)
                in_channels = width
        self.norm = spec.norm
        pooled = image_size // 2 ** len(spec.block_depths)
        self.fc6 = nnx.Linear(pooled * pooled * in_channels, spec.fc_width, kernel_init=he_normal, dtype=dtype, rngs=rngs)
        self.fc7 = nnx.Linear(spec.fc_width, spec.fc_width, kernel_init=he_normal, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout)
        self.head = ranking_head(spec.fc_width, outputs, spec.zero_head, rngs, dtype)

    def features(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """psi(x): the fc7 activations [N, fc_width] (after dropout when training)."""
        for block, n_layers in enumerate(self.depths, start=1):
            for i in range(1, n_layers + 1):
                x = getattr(self, f"conv{block}_{i}")(x)
                if self.norm == "group":
                    x = getattr(self, f"norm{block}_{i}")(x)
                x = nnx.relu(x)
            x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)  # NHWC flatten order (weight porters permute fc6 to match)
        keys = jax.random.split(dropout_key) if dropout_key is not None else (None, None)
        x = self.dropout(nnx.relu(self.fc6(x)), deterministic=dropout_key is None, rngs=keys[0])
        x = self.dropout(nnx.relu(self.fc7(x)), deterministic=dropout_key is None, rngs=keys[1])
        return x

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """r(x): the ranking scores of each image, shape [N, outputs], float32."""
        return self.head(self.features(x, dropout_key=dropout_key)).astype(jnp.float32)

