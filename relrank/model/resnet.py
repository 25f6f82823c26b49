"""ResNet-50 (He et al., 2016) with a linear ranking head, in Flax NNX, and the port of torchvision's weights.

Batch normalisation is frozen, as is usual when fine-tuning on small batches: each BatchNorm becomes a
per-channel affine map (`scale`, `bias`) computed from its running statistics when weights are ported,
which gives the same outputs as the PyTorch module in eval mode. The feature is the global average of
the last stage (2048 channels); `head` is the linear ranking layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from relrank.model.layers import Affine, RankedBackbone, he_normal, ranking_head

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride of the first block)
EXPANSION = 4
BN_EPS = 1e-5  # torchvision's


def _conv(cin: int, cout: int, size: int, stride: int, rngs: nnx.Rngs, dtype) -> nnx.Conv:
    padding = ((size // 2, size // 2),) * 2
    return nnx.Conv(cin, cout, (size, size), strides=stride, padding=padding, use_bias=False, kernel_init=he_normal,
                    dtype=dtype, rngs=rngs)


class Bottleneck(nnx.Module):
    def __init__(self, cin: int, width: int, stride: int, rngs: nnx.Rngs, dtype):
        cout = width * EXPANSION
        self.conv1, self.bn1 = _conv(cin, width, 1, 1, rngs, dtype), Affine(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride, rngs, dtype), Affine(width)  # torchvision: stride here
        self.conv3, self.bn3 = _conv(width, cout, 1, 1, rngs, dtype), Affine(cout)
        self.downsample = nnx.List([_conv(cin, cout, 1, stride, rngs, dtype), Affine(cout)]) \
            if stride != 1 or cin != cout else nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = jax.nn.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = self.downsample[1](self.downsample[0](x)) if self.downsample else x
        return jax.nn.relu(y + shortcut)


class ResNet50(RankedBackbone):
    """Input: float images [N, H, W, 3], preprocessed; H = W a multiple of 32. Output: scores [N, outputs]."""

    def __init__(self, *, rngs: nnx.Rngs, dtype=jnp.float32, outputs: int = 1, dropout: float = 0.0,
                 zero_head: bool = False):
        self.conv1, self.bn1 = _conv(3, 64, 7, 2, rngs, dtype), Affine(64)
        cin, stages = 64, []
        for width, blocks, stride in STAGES:
            stage = []
            for i in range(blocks):
                stage.append(Bottleneck(cin, width, stride if i == 0 else 1, rngs, dtype))
                cin = width * EXPANSION
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = (nnx.List(s) for s in stages)
        self.dropout = nnx.Dropout(dropout)
        self.head = ranking_head(cin, outputs, zero_head, rngs, dtype)

    def features(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                  ((0, 0), (1, 1), (1, 1), (0, 0)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
        return x.mean(axis=(1, 2))


def from_torchvision(tensors: dict[str, np.ndarray]) -> dict:
    """torchvision's ResNet-50 state dict (numpy arrays) -> this module's backbone params (no head)."""
    def conv(name):
        return {"kernel": np.transpose(tensors[f"{name}.weight"], (2, 3, 1, 0))}  # OIHW -> HWIO

    def bn(name):
        scale = tensors[f"{name}.weight"] / np.sqrt(tensors[f"{name}.running_var"] + BN_EPS)
        return {"scale": scale, "bias": tensors[f"{name}.bias"] - tensors[f"{name}.running_mean"] * scale}

    params = {"conv1": conv("conv1"), "bn1": bn("bn1")}
    for s, (_, blocks, _) in enumerate(STAGES, start=1):
        stage = {}
        for i in range(blocks):
            prefix = f"layer{s}.{i}"
            block = {f"{kind}{k}": make(f"{prefix}.{kind}{k}") for k in (1, 2, 3)
                     for kind, make in (("conv", conv), ("bn", bn))}
            if f"{prefix}.downsample.0.weight" in tensors:
                block["downsample"] = {0: conv(f"{prefix}.downsample.0"), 1: bn(f"{prefix}.downsample.1")}
            stage[i] = block
        params[f"layer{s}"] = stage
    return params
