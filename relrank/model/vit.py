"""Vision Transformers (ViT, DINOv2, CLIP's image tower) with a linear ranking head, in Flax NNX.

One module covers the three: `ViTSpec` says where they differ (LayerNorm epsilon, layer scale for
DINOv2, CLIP's extra pre-norm and quick-GELU) and which feature feeds the head (the class token or
the mean of the patch tokens). Position embeddings are stored at the native grid and interpolated
(bicubic) to the input's grid, so a CPU run at 64-112 px works.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from relrank.model.vgg import glorot_uniform


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
    pooling: str = "cls"  # or "mean" of the patch tokens


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


class ViT(nnx.Module):
    """Input: float images [N, S, S, 3], preprocessed, S a multiple of the patch. Output: scores [N, outputs]."""

    def __init__(self, spec: ViTSpec, *, rngs: nnx.Rngs, dtype=jnp.float32, outputs: int = 1):
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
        self.head = nnx.Linear(spec.width, outputs, kernel_init=glorot_uniform, dtype=dtype, rngs=rngs)

    def position_embeddings(self, grid: int) -> jax.Array:
        """The class token's and the patches' position embeddings for a grid x grid input (bicubic resampling)."""
        pos = self.pos_embed[...]
        native = self.spec.native_size // self.spec.patch
        if grid == native:
            return pos
        patches = pos[:, 1:].reshape(1, native, native, -1)
        patches = jax.image.resize(patches, (1, grid, grid, patches.shape[-1]), "bicubic")
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
        pooled = tokens[:, 0] if self.spec.pooling == "cls" else tokens[:, 1:].mean(axis=1)
        return self.norm(pooled)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def from_hf_vit(tensors: dict[str, np.ndarray], spec: ViTSpec) -> dict:
    """HF transformers' `ViTModel` / `Dinov2Model` state dict (numpy) -> this module's backbone params (no head).

    Both naming schemes are read: the files on the Hub (transformers 4: `encoder.layer.N.attention.attention.query`)
    and transformers 5's modules (`layers.N.attention.q_proj` for ViT, `encoder.layer.N.attention.q_proj` for DINOv2).
    """
    def first(*names):
        return next((n for n in names if f"{n}.weight" in tensors or n in tensors), names[0])

    def linear(name):
        return {"kernel": tensors[f"{name}.weight"].T, "bias": tensors[f"{name}.bias"]}

    def norm(name):
        return {"scale": tensors[f"{name}.weight"], "bias": tensors[f"{name}.bias"]}

    params = {
        "patch_embed": {"kernel": np.transpose(tensors["embeddings.patch_embeddings.projection.weight"], (2, 3, 1, 0)),
                        "bias": tensors["embeddings.patch_embeddings.projection.bias"]},
        "cls_token": tensors["embeddings.cls_token"], "pos_embed": tensors["embeddings.position_embeddings"],
        "norm": norm("layernorm"), "blocks": {},
    }
    for i in range(spec.depth):
        p = first(f"encoder.layer.{i}.norm1", f"encoder.layer.{i}.layernorm_before", f"layers.{i}.layernorm_before",
                  f"layers.{i}.norm1").rsplit(".", 1)[0]
        qkv = [linear(first(f"{p}.attention.attention.{old}", f"{p}.attention.{new}"))
               for old, new in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))]
        block = {
            "norm1": norm(first(f"{p}.norm1", f"{p}.layernorm_before")),
            "norm2": norm(first(f"{p}.norm2", f"{p}.layernorm_after")),
            "qkv": {"kernel": np.concatenate([q["kernel"] for q in qkv], axis=1),
                    "bias": np.concatenate([q["bias"] for q in qkv])},
            "proj": linear(first(f"{p}.attention.output.dense", f"{p}.attention.o_proj")),
            "fc1": linear(first(f"{p}.mlp.fc1", f"{p}.intermediate.dense")),
            "fc2": linear(first(f"{p}.mlp.fc2", f"{p}.output.dense")),
        }
        if spec.layer_scale:
            block["ls1"], block["ls2"] = tensors[f"{p}.layer_scale1.lambda1"], tensors[f"{p}.layer_scale2.lambda1"]
        params["blocks"][i] = block
    return params


def from_hf_clip(tensors: dict[str, np.ndarray], spec: ViTSpec) -> dict:
    """HF transformers' `CLIPVisionModel` state dict (or a whole `CLIPModel`'s, whose image tower is under
    `vision_model.`) -> this module's backbone params (no head). Needs `spec.pre_norm`; CLIP's patch projection
    has no bias."""
    tensors = {k.removeprefix("vision_model."): v for k, v in tensors.items() if not k.startswith("text_model.")}

    def linear(name):
        return {"kernel": tensors[f"{name}.weight"].T, "bias": tensors[f"{name}.bias"]}

    def norm(name):
        return {"scale": tensors[f"{name}.weight"], "bias": tensors[f"{name}.bias"]}

    projection = tensors["embeddings.patch_embedding.weight"]
    params = {
        "patch_embed": {"kernel": np.transpose(projection, (2, 3, 1, 0)),
                        "bias": np.zeros(projection.shape[0], projection.dtype)},
        "cls_token": tensors["embeddings.class_embedding"].reshape(1, 1, -1),
        "pos_embed": tensors["embeddings.position_embedding.weight"][None],
        "norm_pre": norm("pre_layrnorm"), "norm": norm("post_layernorm"), "blocks": {},
    }
    for i in range(spec.depth):
        p = f"encoder.layers.{i}"
        qkv = [linear(f"{p}.self_attn.{part}_proj") for part in ("q", "k", "v")]
        params["blocks"][i] = {
            "norm1": norm(f"{p}.layer_norm1"), "norm2": norm(f"{p}.layer_norm2"),
            "qkv": {"kernel": np.concatenate([q["kernel"] for q in qkv], axis=1),
                    "bias": np.concatenate([q["bias"] for q in qkv])},
            "proj": linear(f"{p}.self_attn.out_proj"), "fc1": linear(f"{p}.mlp.fc1"), "fc2": linear(f"{p}.mlp.fc2"),
        }
    return params
