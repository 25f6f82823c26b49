"""Compile time and time per training step of the jit-compiled pairwise step.

    python benchmarks/train_step.py --model=vgg16 --batch_pairs=16 --steps=3

Prints the compile time, the time of one train step (forward + backward +
RMSProp over 2 * batch_pairs images) and, side by side in the same run, the
time of a forward pass over the same images, with their ratio (about 3 for a
compute-bound step).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from relrank.configs import make_config
from relrank.configs.presets import MODEL_PRESETS
from relrank.data.batches import pairs_batch
from relrank.model.network import jit_apply, random_params
from relrank.parallel import sharding
from relrank.train.step import init_state, jit_train_step, make_task


def timed(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg16", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--batch_pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after a warm-up step")
    parser.add_argument("--compute_dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()

    config = make_config(recipe="paper", model=args.model, image_size=args.image_size, batch_pairs=args.batch_pairs,
                         compute_dtype=args.compute_dtype)
    mesh = sharding.make_mesh()
    task = make_task(config)
    state = sharding.put_replicated(init_state(task, random_params(config)), mesh)
    size, n = config.image_size, config.batch_pairs
    rng = np.random.default_rng(0)
    batch = sharding.put_batch(pairs_batch(
        rng.integers(0, 256, (n, 2, size, size, 3), dtype=np.uint8),
        rng.choice([0.0, 0.5, 1.0], (n, 1)).astype(np.float32), np.ones((n, 1), np.float32)), mesh)
    images = jax.device_put(np.asarray(batch["images"]), sharding.batch_sharding(mesh))

    start = time.perf_counter()
    step = jit_train_step(task, mesh).lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    holder = {"state": state}

    def train_once():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics["loss"]

    score = jit_apply(task.network, mesh)
    step_seconds = timed(train_once, args.steps)
    forward_seconds = timed(lambda: score(holder["state"].params, images), args.steps)
    print(f"devices: {mesh.size} x {jax.devices()[0].device_kind}")
    print(f"model={config.model} image={size}x{size} batch={n} pairs ({2 * n} images) dtype={config.compute_dtype}")
    print(f"compile (train step):   {compile_seconds:8.2f} s")
    print(f"train step:             {step_seconds:8.3f} s  ({2 * n / step_seconds:8.1f} images/s)")
    print(f"forward only (scoring): {forward_seconds:8.3f} s  ({2 * n / forward_seconds:8.1f} images/s)")
    print(f"train / forward ratio:  {step_seconds / forward_seconds:8.2f}")


if __name__ == "__main__":
    main()
