"""Does the input pipeline keep up with the train step? Pairs per second delivered against consumed.

    python benchmarks/input_pipeline.py [--model=vgg16_small] [--batch_pairs=16] [--workers=2] [--steps=200]

On the synthetic set: the pairs per second the in-memory table and the streaming pipeline
(grain workers decoding from array_record) deliver, beside the pairs per second the
jit-compiled train step of `--model` consumes, in one run. A ratio delivered / consumed
above 1 means the step, not the data, sets the pace.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax

from relrank.configs import make_config
from relrank.configs.presets import MODEL_PRESETS
from relrank.data.batches import BatchPlans, fill
from relrank.data.datasets import load_dataset
from relrank.data.pairs import LabelledPairs
from relrank.data.streaming import streaming_batches
from relrank.model.network import random_params
from relrank.parallel import sharding
from relrank.train.step import init_state, jit_train_step, make_task


def rate(batches, steps: int, pairs: int) -> float:
    """Pairs per second over `steps` batches after the first (which includes start-up)."""
    iterator = iter(batches)
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(next(iterator))
    return steps * pairs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vgg16_small", choices=sorted(MODEL_PRESETS))
    parser.add_argument("--batch_pairs", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "relrank_bench_tfds"))
    args = parser.parse_args()

    config = make_config(recipe="paper", model=args.model, batch_pairs=args.batch_pairs)
    data = load_dataset("synthetic", data_dir=args.data_dir)
    pairs = data.pairs_of("train", ("brightness",))
    table, stored = (data.split_images(pairs, config.image_size, "train", in_memory=m) for m in (True, False))
    plans = BatchPlans(LabelledPairs.join([table.pairs["brightness"]]), len(table.ids), args.batch_pairs, seed=0)
    n = args.steps + 1
    memory = rate((fill(plans(s), table.images.__getitem__) for s in range(n)), args.steps, args.batch_pairs)
    streamed = rate(streaming_batches(plans, stored.images, 0, n, workers=args.workers), args.steps, args.batch_pairs)

    mesh = sharding.make_mesh()
    task = make_task(config)
    state = sharding.put_replicated(init_state(task, random_params(config)), mesh)
    batch = sharding.put_batch(fill(plans(0), table.images.__getitem__), mesh)
    step = jit_train_step(task, mesh).lower(state, batch).compile()
    holder = [state]

    def steps():
        while True:
            holder[0], metrics = step(holder[0], batch)
            yield metrics["loss"]

    timed_steps = min(args.steps, 50)
    consumed = rate(steps(), timed_steps, args.batch_pairs)
    print(f"{os.cpu_count()} cores; jax {jax.__version__}; synthetic set, {config.model} at "
          f"{config.image_size} px, {args.batch_pairs} pairs per step")
    print(f"train step consumes:        {consumed:9.0f} pairs/s")
    print(f"in-memory table delivers:   {memory:9.0f} pairs/s  ({memory / consumed:6.1f}x the step)")
    print(f"streaming ({args.workers} workers) delivers: {streamed:7.0f} pairs/s  ({streamed / consumed:6.1f}x the step)")


if __name__ == "__main__":
    main()
