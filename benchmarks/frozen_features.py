"""The frozen-feature fast path on PubFig (772 images, 11 attributes), per backbone: feature extraction at the
preset's size and at 112 px, then the ranking layer of all 11 attributes trained on the cached features
(`--recipe=linear --attr=all`, a second run, so the cache is warm: the training loop with its evaluations, and
the whole run, which with random weights also initialises the backbone to save it), against fine-tuning the
same backbone.

    python benchmarks/frozen_features.py --pubfig=../shared/data/pubfig
    python benchmarks/frozen_features.py --models=vit_s16,resnet50 --sizes=112

Weights are random (pretrained files cannot be downloaded here): the times do not depend on the values; the
test accuracy is that of random features, a sanity check only. Fine-tuning is timed per step (16 pairs, the
paper's batch, after a compile) and extrapolated to the paper's 2 PubFig epochs over its training pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

from relrank.configs import make_config
from relrank.configs.presets import MODEL_PRESETS
from relrank.data.batches import pairs_batch
from relrank.data.datasets import load_dataset
from relrank.data.pairs import PairStructure
from relrank.model.registry import backbone
from relrank.model.network import random_params
from relrank.parallel import sharding
from relrank.train.loop import train
from relrank.train.step import init_state, jit_train_step, make_task

MODELS = ("vgg16", "googlenet", "resnet50", "vit_s16", "vit_b16", "dinov2_s14", "dinov2_b14", "clip_b16")


def fine_tune_step_seconds(config, repeats: int = 3) -> float:
    """Median seconds of one full train step (backbone included) of 16 pairs at the config's size."""
    config = make_config(config.dataset, "paper", model=config.model, image_size=config.image_size, batch_pairs=16,
                         attr=config.attr)
    mesh = sharding.make_mesh()
    task = make_task(config, 1000)
    state = sharding.put_replicated(init_state(task, random_params(config)), mesh)
    rng = np.random.default_rng(0)
    size, attrs = config.image_size, len(config.attrs)
    batch = sharding.put_batch(pairs_batch(rng.integers(0, 256, (16, 2, size, size, 3), dtype=np.uint8),
                                           rng.choice([0.0, 1.0], (16, attrs)).astype(np.float32),
                                           np.ones((16, attrs), np.float32)), mesh)
    step = jit_train_step(task, mesh).lower(state, batch).compile()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pubfig", default=os.path.join("..", "shared", "data", "pubfig"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sizes", default="native,112", help="'native' is the preset's size (224); a size the model "
                        "cannot take is rounded up to one it can (VGG-16: 112 -> 128)")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.pubfig, "data.mat")):
        sys.exit(f"no PubFig data at {args.pubfig} (data.mat and images/): give --pubfig")
    print(f"jax {jax.__version__}; {jax.device_count()} x {jax.devices()[0].device_kind}; {os.cpu_count()} cores")
    scratch = tempfile.mkdtemp(prefix="frozen_features_")
    try:
        data_dir = os.path.join(scratch, "tfds")
        data = load_dataset("pubfig", data_dir=data_dir, manual_dir=args.pubfig)
        attrs = ",".join(data.attributes)
        structure = PairStructure.of(data.pairs_of("train", tuple(data.attributes)))
        print("| model | size | features: s (img/s) | head, 11 attributes: s (steps) | whole 2nd run: s | mean test acc. "
              "| fine-tune step, 16 pairs | fine-tuning 11 networks, 2 epochs each (estimate) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for model in args.models.split(","):
            for size in args.sizes.split(","):
                multiple = backbone(MODEL_PRESETS[model]["spec"].architecture).size_multiple
                side = None if size == "native" else -(-int(size) // multiple) * multiple  # VGG: 112 -> 128
                flags = dict(model=model, image_size=side, attr=attrs, data_dir=data_dir, manual_dir=args.pubfig,
                             feature_cache=os.path.join(scratch, "cache"))
                config = make_config("pubfig", "linear", pairs=structure, **flags)  # as train.py resolves it
                first = train(config, os.path.join(scratch, f"{model}-{size}-a"), data=data)  # computes the features
                second = train(config, os.path.join(scratch, f"{model}-{size}-b"), data=data)  # cached

                step = fine_tune_step_seconds(config)
                pairs = sum(len(p) for p in data.pairs_of("train", config.attrs).values())
                hours = 2 * pairs / 16 * step / 3600  # the paper: one network per attribute, 2 epochs of its pairs
                rate = first["features_computed"] / first["feature_seconds"]
                print(f"| {model} | {config.image_size} | {first['feature_seconds']:.1f} ({rate:.0f}) | "
                      f"{second['loop_seconds']:.1f} ({second['total_steps']}) | {second['wall_seconds']:.1f} | "
                      f"{second['test_accuracy']:.2f} | "
                      f"{step * 1e3:.0f} ms | {hours:.1f} h |", flush=True)
                for name in ("a", "b"):
                    shutil.rmtree(os.path.join(scratch, f"{model}-{size}-{name}"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(dict(models=args.models, sizes=args.sizes)))


if __name__ == "__main__":
    main()
