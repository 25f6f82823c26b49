"""Latency of scoring a few images with a trained ranker, against the forward pass's own time.

    python benchmarks/scoring.py                   # vgg16_small and vgg16 (random weights)
    python benchmarks/scoring.py --models=vgg16_small --repeats=20

For each model, in one run: the time of `Ranker.score([one.jpg])` after the first
call (decoding and resizing the file, padding, the forward pass, fetching the
score), and beside it the time of the jit-compiled forward pass alone on one
image already in memory, with their ratio; then the same for 8 files. Targets
(issue 17): one image on VGG-16 within 2x of the forward pass, and under 20 ms
on vgg16_small.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from relrank.configs import make_config
from relrank.model.network import random_params
from relrank.use.ranker import Ranker


def median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # the first call compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg16_small,vgg16", help="comma-separated model presets")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the first (median reported)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    files = []
    for i in range(8):
        files.append(os.path.join(folder, f"{i}.jpg"))
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(files[-1])
    print(f"{'model':12s} {'images':>6s} {'Ranker.score':>13s} {'forward pass':>13s} {'ratio':>6s}")
    for model in args.models.split(","):
        config = make_config(model=model, attr="x")
        ranker = Ranker(config, random_params(config), step=0)
        forward = jax.jit(ranker.score_fn)
        for n in (1, 8):
            pixels = jnp.asarray(ranker.prepare(files[:n]))
            alone = median_seconds(lambda: forward(ranker.params, pixels), args.repeats)
            scoring = median_seconds(lambda: ranker.score(files[:n]), args.repeats)
            print(f"{model:12s} {n:6d} {1000 * scoring:10.1f} ms {1000 * alone:10.1f} ms {scoring / alone:6.2f}")


if __name__ == "__main__":
    main()
