"""Depthwise convolutions on this machine: relrank's formulation (a sum of k*k shifted, scaled copies of the input,
relrank/model/efficientnet_lite.py) against XLA's grouped convolution (feature_group_count = channels), side by
side in one process, for the shapes of EfficientNet-Lite0 at 224 px, forward and forward + backward.

    python benchmarks/depthwise.py             # batch 32
    python benchmarks/depthwise.py --batch=8
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from relrank.model.efficientnet_lite import DepthwiseConv

# (side, channels, kernel, stride) of Lite0's depthwise layers at 224 px, one per distinct shape.
SHAPES = ((112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 3, 1), (56, 144, 5, 2), (28, 240, 5, 1), (28, 240, 3, 2),
          (14, 480, 3, 1), (14, 480, 5, 1), (14, 672, 5, 2), (7, 1152, 5, 1), (7, 1152, 3, 1))


def timed(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, jax {jax.__version__} on {jax.devices()[0].platform}; batch {args.batch}")
    print(f"{'side':>4s} {'chan':>5s} {'k':>2s} {'s':>2s} {'fwd shifted':>12s} {'fwd grouped':>12s} {'ratio':>6s} "
          f"{'f+b shifted':>12s} {'f+b grouped':>12s} {'ratio':>6s} {'max diff':>9s}")
    totals = np.zeros(4)
    for side, channels, kernel, stride in SHAPES:
        graphdef, state = nnx.split(DepthwiseConv(channels, kernel, stride, nnx.Rngs(0), jnp.float32))
        w, b = state["kernel"][...], state["bias"][...]
        x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch, side, side, channels), np.float32))

        def shifted(w, b, x):
            return nnx.merge(graphdef, {"kernel": w, "bias": b})(x)

        def grouped(w, b, x):
            return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                feature_group_count=channels) + b

        forward = [jax.jit(f) for f in (shifted, grouped)]
        backward = [jax.jit(jax.grad(lambda w, b, x, f=f: jnp.sum(f(w, b, x) ** 2), argnums=(0, 2))) for f in (shifted, grouped)]
        diff = float(jnp.max(jnp.abs(forward[0](w, b, x) - forward[1](w, b, x))))
        row = [timed(f, w, b, x) for f in forward + backward]
        totals += row
        print(f"{side:4d} {channels:5d} {kernel:2d} {stride:2d} {row[0] * 1e3:10.1f}ms {row[1] * 1e3:10.1f}ms "
              f"{row[0] / row[1]:6.2f} {row[2] * 1e3:10.1f}ms {row[3] * 1e3:10.1f}ms {row[2] / row[3]:6.2f} {diff:9.1e}")
    print(f"{'all':>15s} {totals[0] * 1e3:10.1f}ms {totals[1] * 1e3:10.1f}ms {totals[0] / totals[1]:6.2f} "
          f"{totals[2] * 1e3:10.1f}ms {totals[3] * 1e3:10.1f}ms {totals[2] / totals[3]:6.2f}")
    print("ratio = shifted / grouped time: below 1 relrank's formulation is faster")


if __name__ == "__main__":
    main()
