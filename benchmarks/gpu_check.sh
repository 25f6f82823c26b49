#!/usr/bin/env bash
# One prepared GPU check (under 5 minutes on one H200): VGG-16 train-step throughput at 224x224,
# float32 and bfloat16, 16 and 128 pairs per step, with model FLOP utilisation, and whether the
# step would be input-bound (host input pipeline delivery vs the step's consumption).
#
#   bash benchmarks/gpu_check.sh            # needs jax with CUDA: pip install -e . "jax[cuda12]"
#   PEAK_TFLOPS_BF16=989 PEAK_TFLOPS_FP32=67 bash benchmarks/gpu_check.sh   # the GPU's dense peaks (H200 default)
#   MODEL=vgg16_small bash benchmarks/gpu_check.sh   # a smoke test of the script itself (e.g. on a CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python - <<'PY'
import os, statistics, time
import jax, numpy as np
from relrank.parallel import sharding
from relrank.configs import make_config
from relrank.data.batches import BatchPlans, fill
from relrank.data.pairs import LabelledPairs, Pairs
from relrank.model.network import random_params
from relrank.train.step import init_state, jit_train_step, make_task

MODEL = os.environ.get("MODEL", "vgg16")
FLOP_PER_IMAGE = 93e9  # VGG-16 at 224: 15.5 GMACs forward, about 3x that for forward + backward (MFU is for vgg16)
SIDE = make_config(recipe="paper", model=MODEL).image_size
peaks = {"float32": float(os.environ.get("PEAK_TFLOPS_FP32", 67)), "bfloat16": float(os.environ.get("PEAK_TFLOPS_BF16", 989))}
print(f"jax {jax.__version__}; devices: {jax.device_count()} x {jax.devices()[0].device_kind}")

# Host input pipeline: in-memory pair batches from a 224 px table (what a GPU step would be fed).
rng = np.random.default_rng(0)
table = rng.integers(0, 256, (2000, SIDE, SIDE, 3), dtype=np.uint8)
pairs = LabelledPairs.join([Pairs(rng.integers(0, 2000, 50000), rng.integers(0, 2000, 50000), np.ones(50000, np.float32))])
mesh = sharding.make_mesh(jax.devices())
print(f"{'dtype':9s} {'pairs':>5s} {'images/s':>9s} {'step ms':>8s} {'TFLOP/s':>8s} {'MFU':>6s} {'input img/s':>11s} input-bound")
for dtype in ("float32", "bfloat16"):
    for n_pairs in (16, 128):
        config = make_config(recipe="paper", model=MODEL, batch_pairs=n_pairs, compute_dtype=dtype)
        plans = BatchPlans(pairs, len(table), n_pairs, seed=0)
        start = time.perf_counter()
        host = [fill(plans(s), table.__getitem__) for s in range(10)]
        input_rate = 10 * 2 * n_pairs / (time.perf_counter() - start)
        task = make_task(config)
        state = sharding.put_replicated(init_state(task, random_params(config)), mesh)
        batch = sharding.put_batch(host[0], mesh)
        step = jit_train_step(task, mesh).lower(state, batch).compile()
        for _ in range(3):
            state, m = step(state, batch)
        jax.block_until_ready(m["loss"])
        times = []
        for _ in range(10):
            t = time.perf_counter(); state, m = step(state, batch); jax.block_until_ready(m["loss"]); times.append(time.perf_counter() - t)
        seconds = statistics.median(times)
        rate = 2 * n_pairs / seconds
        tflops = rate * FLOP_PER_IMAGE / 1e12
        print(f"{dtype:9s} {n_pairs:5d} {rate:9.0f} {seconds * 1e3:8.1f} {tflops:8.1f} {tflops / peaks[dtype]:6.1%} "
              f"{input_rate:11.0f} {'yes' if input_rate < rate else 'no'}")
        del state, step
print(f"MFU against dense peaks of {peaks} TFLOP/s (set PEAK_TFLOPS_FP32 / PEAK_TFLOPS_BF16 for another GPU)")
PY
