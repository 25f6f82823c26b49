"""Vision Transformers (ViT, DINOv2, CLIP's image tower) with a linear ranking head, in Flax NNX.

One module covers the three: `ViTSpec` says where they differ (LayerNorm epsilon, layer scale for
DINOv2, CLIP's extra pre-norm and quick-GELU) and which feature feeds the head (the class token or
the mean of the patch tokens, after the final LayerNorm). Position embeddings are stored at the
native grid and interpolated to the input's grid as PyTorch's bicubic interpolation does (HF
transformers' `interpolate_pos_encoding`), so a CPU run at 64-112 px works.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from relrank.model.layers import RankedBackbone, ranking_head


@dataclasses.dataclass(frozen=True)
class ViTSpec:
    patch: int = 16
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp: int = 3072
    native_size: int = 224
    eps: float = 1e-6
    layer_scale: bool = False  # DINOv2: each residual branch scaled per channel
    pre_norm: bool = False  # CLIP: a LayerNorm on the embeddings before the blocks
    activation: str = "gelu"  # or CLIP's "quick_gelu"
    pooling: str = "token"  # the class token, or "mean" of the patch tokens


VIT_SPECS = {  # by architecture (relrank/model/registry.py)
    "vit_s16": ViTSpec(width=384, heads=6, mlp=1536),
    "vit_b16": ViTSpec(),
    "dinov2_s14": ViTSpec(patch=14, width=384, heads=6, mlp=1536, native_size=518, layer_scale=True),
    "dinov2_b14": ViTSpec(patch=14, native_size=518, layer_scale=True),
    "clip_b16": ViTSpec(eps=1e-5, pre_norm=True, activation="quick_gelu"),
}
ACTIVATIONS = {"gelu": lambda x: jax.nn.gelu(x, approximate=False), "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x)}


class Block(nnx.Module):
    def __init__(self, spec: ViTSpec, rngs: nnx.Rngs, dtype):
        d = spec.width
        self.norm1 = nnx.LayerNorm(d, epsilon=spec.eps, dtype=dtype, rngs=rngs)
        self.qkv = nnx.Linear(d, 3 * d, dtype=dtype, rngs=rngs)
        self.proj = nnx.Linear(d, d, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, epsilon=spec.eps, dtype=dtype, rngs=rngs)
        self.fc1 = nnx.Linear(d, spec.mlp, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(spec.mlp, d, dtype=dtype, rngs=rngs)
        self.ls1 = nnx.Param(jnp.ones((d,))) if spec.layer_scale else nnx.data(None)
        self.ls2 = nnx.Param(jnp.ones((d,))) if spec.layer_scale else nnx.data(None)
        self.heads, self.activation = spec.heads, ACTIVATIONS[spec.activation]

    def attention(self, x: jax.Array) -> jax.Array:
        n, t, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads), 3, axis=2)
        return self.proj(jax.nn.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0]).reshape(n, t, d))

    def __call__(self, x: jax.Array) -> jax.Array:
        a = self.attention(self.norm1(x))
        x = x + (a * self.ls1[...] if self.ls1 is not None else a)
        m = self.fc2(self.activation(self.fc1(self.norm2(x))))
        return x + (m * self.ls2[...] if self.ls2 is not None else m)


class ViT(RankedBackbone):
    """Input: float images [N, S, S, 3], preprocessed, S a multiple of the patch. Output: scores [N, outputs]."""

    def __init__(self, spec: ViTSpec, *, rngs: nnx.Rngs, dtype=jnp.float32, outputs: int = 1, dropout: float = 0.0,
                 zero_head: bool = False):
        self.spec = spec
        grid = spec.native_size // spec.patch
        self.patch_embed = nnx.Conv(3, spec.width, (spec.patch, spec.patch), strides=spec.patch, padding="VALID",
                                    dtype=dtype, rngs=rngs)
        self.cls_token = nnx.Param(jnp.zeros((1, 1, spec.width)))
        self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1 + grid * grid, spec.width)))
        self.norm_pre = nnx.LayerNorm(spec.width, epsilon=spec.eps, dtype=dtype, rngs=rngs) if spec.pre_norm \
            else nnx.data(None)
        self.blocks = nnx.List([Block(spec, rngs, dtype) for _ in range(spec.depth)])
        self.norm = nnx.LayerNorm(spec.width, epsilon=spec.eps, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.head = ranking_head(spec.width, outputs, zero_head, rngs, dtype)

    def position_embeddings(self, grid: int) -> jax.Array:
        """The class token's and the patches' position embeddings for a grid x grid input."""
        pos = self.pos_embed[...]
        native = self.spec.native_size // self.spec.patch
        if grid == native:
            return pos
        resample = jnp.asarray(bicubic_matrix(native, grid))
        patches = jnp.einsum("ip,jq,pqc->ijc", resample, resample, pos[0, 1:].reshape(native, native, -1))
        return jnp.concatenate([pos[:, :1], patches.reshape(1, grid * grid, -1)], axis=1)

    def features(self, x: jax.Array) -> jax.Array:
        n = x.shape[0]
        patches = self.patch_embed(x)
        grid = patches.shape[1]
        tokens = jnp.concatenate([jnp.broadcast_to(self.cls_token[...], (n, 1, self.spec.width)).astype(patches.dtype),
                                  patches.reshape(n, grid * grid, -1)], axis=1)
        tokens = tokens + self.position_embeddings(grid).astype(tokens.dtype)
        if self.norm_pre is not None:
            tokens = self.norm_pre(tokens)
        for block in self.blocks:
            tokens = block(tokens)
        if self.spec.pooling == "token":
            return self.norm(tokens[:, 0])
        return self.norm(tokens[:, 1:]).mean(axis=1)


def bicubic_matrix(size: int, new_size: int, a: float = -0.75) -> np.ndarray:
    """[new_size, size]: PyTorch's bicubic resampling along one axis (align_corners=False, no antialiasing,
    borders clamped), as a matrix."""
    def kernel(t):
        t = np.abs(t)
        return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                        np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))

    source = (np.arange(new_size) + 0.5) * size / new_size - 0.5
    left = np.floor(source).astype(int)
    matrix = np.zeros((new_size, size))
    for offset in (-1, 0, 1, 2):
        np.add.at(matrix, (np.arange(new_size), np.clip(left + offset, 0, size - 1)),
                  kernel(source - (left + offset)))
    return matrix.astype(np.float32)

