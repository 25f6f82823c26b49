"""Convolution for the VGG layers, with a faster kernel gradient on CPU.

XLA:CPU computes the kernel gradient of a convolution about 10x slower than
the forward pass (measured here: 2.0 s against 0.17 s for a 3x3, 64-channel
layer at 112x112, batch 8). For 3x3 stride-1 'SAME' convolutions on CPU this
module computes that gradient instead as nine matrix products, one per kernel
tap (0.6 s); the forward pass and the input gradient stay XLA's own. Every
other backend and configuration uses `lax.conv_general_dilated` unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """Drop-in replacement for `lax.conv_general_dilated` (pass it to `nnx.Conv`)."""
    fast = (
        jax.default_backend() == "cpu"
        and all(value is None for value in kwargs.values())
        and rhs.shape[:2] == (3, 3)
        and tuple(window_strides) == (1, 1)
        and (padding == "SAME" or [tuple(p) for p in padding] == [(1, 1), (1, 1)])
        and all(d in (None, 1) or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
        and feature_group_count == 1
        and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    )
    if fast:
        return _conv3x3_same(lhs, rhs)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, precision=precision, **kwargs,
    )


def _native(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_NHWC)


@jax.custom_vjp
def _conv3x3_same(x, kernel):
    return _native(x, kernel)


def _forward(x, kernel):
    return _native(x, kernel), (x, kernel)


def _backward(residuals, grad_out):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda inputs: _native(inputs, kernel), x)
    (grad_x,) = input_vjp(grad_out)
    _, height, width, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    taps = [
        [
            jnp.einsum("nhwc,nhwo->co", padded[:, dy : dy + height, dx : dx + width, :], grad_out,
                       preferred_element_type=jnp.float32)
            for dx in range(3)
        ]
        for dy in range(3)
    ]
    return grad_x, jnp.asarray(taps).astype(kernel.dtype)


_conv3x3_same.defvjp(_forward, _backward)
