#!/usr/bin/env bash
# One prepared GPU check (about 7 minutes on one H200): train-step throughput at 224x224 of VGG-16,
# ViT-B/16, ResNet-50, EfficientNet-Lite0 and -Lite2 (depthwise convolutions as shifted sums), float32 and bfloat16, 16 and 128 pairs per step, with model FLOP utilisation,
# whether the step would be input-bound (host input pipeline delivery vs the step's consumption), and
# the frozen-feature path's extraction rate (features of 256-image batches, no gradient).
#
#   bash benchmarks/gpu_check.sh            # needs jax with CUDA: pip install -e . "jax[cuda12]"
#   PEAK_TFLOPS_BF16=989 PEAK_TFLOPS_FP32=67 bash benchmarks/gpu_check.sh   # the GPU's dense peaks (H200 default)
#   MODELS=vgg16_small SIDE=32 bash benchmarks/gpu_check.sh   # a smoke test of the script itself (e.g. on a CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python - <<'PY'
import itertools, os, statistics, time
import jax, numpy as np
from relrank.parallel import sharding
from relrank.configs import make_config
from relrank.data.batches import BatchPlans, fill
from relrank.data.pairs import LabelledPairs, Pairs
from relrank.model.network import features, jit_apply, model_graph, random_params
from relrank.train.step import init_state, jit_train_step, make_task

MODELS = os.environ.get("MODELS", "vgg16,vit_b16,resnet50,efficientnet_lite0,efficientnet_lite2").split(",")
SIDE = int(os.environ.get("SIDE", 224))
# Forward + backward at 224 px, about 3x the forward pass (2 FLOP per multiply-add): VGG-16 15.5 GMACs,
# ViT-B/16 17.6 GMACs, ResNet-50 4.1 GMACs forward. MFU is printed for these three at 224 px; for the others
# the compiled step's own FLOP count (XLA's cost analysis) is used where it gives one.
FLOP_PER_IMAGE = {"vgg16": 93e9, "vit_b16": 105.6e9, "resnet50": 24.6e9}
peaks = {"float32": float(os.environ.get("PEAK_TFLOPS_FP32", 67)), "bfloat16": float(os.environ.get("PEAK_TFLOPS_BF16", 989))}
print(f"jax {jax.__version__}; devices: {jax.device_count()} x {jax.devices()[0].device_kind}")

# Host input pipeline: in-memory pair batches from a 224 px table (what a GPU step would be fed).
rng = np.random.default_rng(0)
table = rng.integers(0, 256, (2000, SIDE, SIDE, 3), dtype=np.uint8)
pairs = LabelledPairs.join([Pairs(rng.integers(0, 2000, 50000), rng.integers(0, 2000, 50000), np.ones(50000, np.float32))])
mesh = sharding.make_mesh(jax.devices())
print(f"{'model':18s} {'dtype':9s} {'pairs':>5s} {'images/s':>9s} {'step ms':>8s} {'TFLOP/s':>8s} {'MFU':>6s} {'input img/s':>11s} input-bound")
for MODEL, dtype, n_pairs in itertools.product(MODELS, ("float32", "bfloat16"), (16, 128)):
    flop = FLOP_PER_IMAGE.get(MODEL) if SIDE == 224 else None
    config = make_config(recipe="paper", model=MODEL, image_size=SIDE, batch_pairs=n_pairs, compute_dtype=dtype)
    plans = BatchPlans(pairs, len(table), n_pairs, seed=0)
    start = time.perf_counter()
    host = [fill(plans(s), table.__getitem__) for s in range(10)]
    input_rate = 10 * 2 * n_pairs / (time.perf_counter() - start)
    task = make_task(config)
    state = sharding.put_replicated(init_state(task, random_params(config)), mesh)
    batch = sharding.put_batch(host[0], mesh)
    step = jit_train_step(task, mesh).lower(state, batch).compile()
    if flop is None:
        cost = step.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flop = (cost or {}).get("flops", 0) / (2 * n_pairs) or None
    for _ in range(3):
        state, m = step(state, batch)
    jax.block_until_ready(m["loss"])
    times = []
    for _ in range(10):
        t = time.perf_counter(); state, m = step(state, batch); jax.block_until_ready(m["loss"]); times.append(time.perf_counter() - t)
    seconds = statistics.median(times)
    rate = 2 * n_pairs / seconds
    tflops = rate * flop / 1e12 if flop else float("nan")
    print(f"{MODEL:18s} {dtype:9s} {n_pairs:5d} {rate:9.0f} {seconds * 1e3:8.1f} {tflops:8.1f} {tflops / peaks[dtype]:6.1%} "
          f"{input_rate:11.0f} {'yes' if input_rate < rate else 'no'}")
    del state, step

print(f"{'model':18s} {'dtype':9s} frozen-feature extraction, images/s (batches of 256)")
for MODEL in MODELS:
    for dtype in ("float32", "bfloat16"):
        config = make_config(model=MODEL, image_size=SIDE, compute_dtype=dtype)
        extract = jit_apply(model_graph(config), mesh, features)
        params = sharding.put_replicated(random_params(config), mesh)
        images = sharding.put_images(table[:256], mesh)
        jax.block_until_ready(extract(params, images))
        start = time.perf_counter()
        for _ in range(5):
            out = extract(params, images)
        jax.block_until_ready(out)
        print(f"{MODEL:18s} {dtype:9s} {5 * 256 / (time.perf_counter() - start):.0f}")
print(f"MFU against dense peaks of {peaks} TFLOP/s (set PEAK_TFLOPS_FP32 / PEAK_TFLOPS_BF16 for another GPU)")
PY
