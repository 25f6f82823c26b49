"""GoogLeNet (Inception v1, Szegedy et al., 2015) in torchvision's layout, with a linear ranking head, in Flax NNX.

The paper's named alternative to VGG-16. As in torchvision: every convolution is followed by a BatchNorm
(frozen here, as a per-channel affine map) and a ReLU; max-pools round up (`ceil_mode`); the "5x5"
branch of each Inception block is a 3x3 convolution. The feature is the global average of the last
block (1024 channels); the auxiliary classifiers are not part of it. torchvision's ImageNet weights
expect ImageNet-normalised input that the model re-normalises to (x - 0.5) / 0.5 (`transform_input`):
here the preprocessing is (x - 0.5) / 0.5 directly, which is the same.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from relrank.model.layers import Affine, RankedBackbone, he_normal, ranking_head

BN_EPS = 1e-3  # torchvision's BasicConv2d
# name -> (in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection), in order; "pool" marks a max-pool.
BLOCKS = (
    ("inception3a", (192, 64, 96, 128, 16, 32, 32)), ("inception3b", (256, 128, 128, 192, 32, 96, 64)), "pool",
    ("inception4a", (480, 192, 96, 208, 16, 48, 64)), ("inception4b", (512, 160, 112, 224, 24, 64, 64)),
    ("inception4c", (512, 128, 128, 256, 24, 64, 64)), ("inception4d", (512, 112, 144, 288, 32, 64, 64)),
    ("inception4e", (528, 256, 160, 320, 32, 128, 128)), "pool2",
    ("inception5a", (832, 256, 160, 320, 32, 128, 128)), ("inception5b", (832, 384, 192, 384, 48, 128, 128)),
)


def max_pool(x: jax.Array, size: int, stride: int, padding: int = 0) -> jax.Array:
    """PyTorch's MaxPool2d with ceil_mode=True: windows may run past the bottom/right edge (never start past it)."""
    def pads(n):
        out = math.ceil((n + 2 * padding - size) / stride) + 1
        if (out - 1) * stride >= n + padding:
            out -= 1
        return padding, (out - 1) * stride + size - n - padding

    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1),
                                 ((0, 0), pads(x.shape[1]), pads(x.shape[2]), (0, 0)))


class BasicConv(nnx.Module):
    """Convolution (no bias), frozen BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, size: int, rngs: nnx.Rngs, dtype, stride: int = 1):
        self.conv = nnx.Conv(cin, cout, (size, size), strides=stride, padding=((size // 2, size // 2),) * 2,
                             use_bias=False, kernel_init=he_normal, dtype=dtype, rngs=rngs)
        self.bn = Affine(cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.conv(x)))


class Inception(nnx.Module):
    def __init__(self, widths: tuple[int, ...], rngs: nnx.Rngs, dtype):
        cin, c1, c3r, c3, c5r, c5, cp = widths
        self.branch1 = BasicConv(cin, c1, 1, rngs, dtype)
        self.branch2 = nnx.List([BasicConv(cin, c3r, 1, rngs, dtype), BasicConv(c3r, c3, 3, rngs, dtype)])
        self.branch3 = nnx.List([BasicConv(cin, c5r, 1, rngs, dtype), BasicConv(c5r, c5, 3, rngs, dtype)])
        self.branch4 = nnx.List([nnx.data(None), BasicConv(cin, cp, 1, rngs, dtype)])  # [0] is the max-pool

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([self.branch1(x), self.branch2[1](self.branch2[0](x)),
                                self.branch3[1](self.branch3[0](x)), self.branch4[1](max_pool(x, 3, 1, 1))], axis=-1)


class GoogLeNet(RankedBackbone):
    """Input: float images [N, H, W, 3], preprocessed; H = W a multiple of 32. Output: scores [N, outputs]."""

    def __init__(self, *, rngs: nnx.Rngs, dtype=jnp.float32, outputs: int = 1, dropout: float = 0.0,
                 zero_head: bool = False):
        self.conv1 = BasicConv(3, 64, 7, rngs, dtype, stride=2)
        self.conv2 = BasicConv(64, 64, 1, rngs, dtype)
        self.conv3 = BasicConv(64, 192, 3, rngs, dtype)
        for block in BLOCKS:
            if not isinstance(block, str):
                setattr(self, block[0], Inception(block[1], rngs, dtype))
        self.dropout = nnx.Dropout(dropout)
        self.head = ranking_head(1024, outputs, zero_head, rngs, dtype)

    def features(self, x: jax.Array) -> jax.Array:
        x = max_pool(self.conv1(x), 3, 2)
        x = max_pool(self.conv3(self.conv2(x)), 3, 2)
        for block in BLOCKS:
            if block == "pool":
                x = max_pool(x, 3, 2)
            elif block == "pool2":
                x = max_pool(x, 2, 2)
            else:
                x = getattr(self, block[0])(x)
        return x.mean(axis=(1, 2))


def from_torchvision(tensors: dict[str, np.ndarray]) -> dict:
    """torchvision's GoogLeNet state dict (numpy arrays) -> this module's backbone params (no head, no aux)."""
    def basic(name):
        scale = tensors[f"{name}.bn.weight"] / np.sqrt(tensors[f"{name}.bn.running_var"] + BN_EPS)
        return {"conv": {"kernel": np.transpose(tensors[f"{name}.conv.weight"], (2, 3, 1, 0))},
                "bn": {"scale": scale, "bias": tensors[f"{name}.bn.bias"] - tensors[f"{name}.bn.running_mean"] * scale}}

    params = {name: basic(name) for name in ("conv1", "conv2", "conv3")}
    for block in BLOCKS:
        if isinstance(block, str):
            continue
        name = block[0]
        params[name] = {"branch1": basic(f"{name}.branch1"),
                        "branch2": {0: basic(f"{name}.branch2.0"), 1: basic(f"{name}.branch2.1")},
                        "branch3": {0: basic(f"{name}.branch3.0"), 1: basic(f"{name}.branch3.1")},
                        "branch4": {1: basic(f"{name}.branch4.1")}}
    return params
