"""relrank (JAX) against the same network and update written in plain PyTorch, side by side, as ratios.

    python benchmarks/vs_pytorch.py                      # vgg16_small (32 px, 16 pairs) and VGG-16 (224 px, 2 pairs)
    python benchmarks/vs_pytorch.py --presets=vgg16_small --runs=3
    python benchmarks/vs_pytorch.py --presets=efficientnet_lite0   # 224 px, 16 pairs, against efficientnet-lite-pytorch

For each preset, each framework runs in fresh processes (`--runs` of them): compile or
first-call time, the median in-process time of a train step (forward and backward over
2 x pairs images, RankNet loss with the L2 penalty, Lasagne's RMSProp), scoring throughput
(forward only, no dropout) and the process's peak resident memory. The table shows the
median over runs of each figure and the ratio relrank / PyTorch (below 1: relrank is faster
or smaller). float32; PyTorch uses as many threads as there are cores. Needs torch
(`pip install -e ".[test]"`). EfficientNet-Lite0's reference is the `efficientnet-lite-pytorch` model (its
BatchNorm frozen in eval mode, relrank's folded into the convolutions) with a linear ranking layer on the
pooled feature; its scoring figure is also feature extraction's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

PRESETS = {  # preset -> (image side, pairs per train step, images per scoring batch, timed steps)
    "vgg16_small": (32, 16, 128, 30),
    "vgg16": (224, 2, 16, 3),
    "efficientnet_lite0": (224, 16, 32, 5),
}


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def batch_arrays(size: int, pairs: int):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2 * pairs, size, size, 3), dtype=np.uint8)
    target = rng.choice([0.0, 0.5, 1.0], (pairs, 1)).astype(np.float32)
    return images, target


def run_jax(preset: str) -> dict:
    import jax
    import numpy as np

    from relrank.parallel import sharding
    from relrank.configs import make_config
    from relrank.model.network import jit_apply, random_params
    from relrank.train.step import init_state, jit_train_step, make_task

    size, pairs, score_batch, steps = PRESETS[preset]
    config = make_config(recipe="paper", model=preset, image_size=size, batch_pairs=pairs)
    mesh = sharding.make_mesh()
    task = make_task(config)
    images, target = batch_arrays(size, pairs)
    a = np.arange(0, 2 * pairs, 2, dtype=np.int32)
    batch = sharding.put_batch(dict(images=images, a=a, b=a + 1, target=target, weight=np.ones_like(target)), mesh)
    state = sharding.put_replicated(init_state(task, random_params(config)), mesh)
    start = time.perf_counter()
    step = jit_train_step(task, mesh).lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    holder = [state]

    def train_once():
        holder[0], metrics = step(holder[0], batch)
        jax.block_until_ready(metrics["loss"])

    train_once()
    step_seconds = median_time(train_once, steps)
    score = jit_apply(task.network, mesh)
    score_images = sharding.put_images(np.resize(images, (score_batch, size, size, 3)), mesh)
    jax.block_until_ready(score(holder[0].params, score_images))
    score_seconds = median_time(lambda: jax.block_until_ready(score(holder[0].params, score_images)), max(3, steps // 3))
    return dict(compile_s=compile_seconds, step_s=step_seconds, score_img_s=score_batch / score_seconds)


def run_torch(preset: str) -> dict:
    import numpy as np
    import torch

    from relrank.configs.presets import MODEL_PRESETS

    torch.set_num_threads(os.cpu_count() or 1)
    spec = MODEL_PRESETS[preset]["spec"]
    size, pairs, score_batch, steps = PRESETS[preset]
    model, backbone, head = (_torch_lite if preset.startswith("efficientnet_lite") else _torch_vgg)(spec, size)
    kernels = [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]
    optimizer = torch.optim.RMSprop([dict(params=backbone, lr=1e-5), dict(params=head, lr=1e-4)], alpha=0.9, eps=1e-6)
    images, target = batch_arrays(size, pairs)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    x_uint8 = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    t = torch.from_numpy(target[:, 0])

    def train_once():
        x = (x_uint8.float() - mean) / std
        r = model(x)[:, 0]
        p = torch.sigmoid(r[0::2] - r[1::2]).clamp(1e-7, 1 - 1e-7)
        loss = -(t * torch.log(p) + (1 - t) * torch.log1p(-p)).mean() + 1e-5 * sum((k * k).sum() for k in kernels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    start = time.perf_counter()
    train_once()
    first_seconds = time.perf_counter() - start
    step_seconds = median_time(train_once, steps)
    model.eval()
    score_x = torch.from_numpy(np.resize(images, (score_batch, size, size, 3))).permute(0, 3, 1, 2).contiguous()

    def score_once():
        with torch.no_grad():
            model((score_x.float() - mean) / std)

    score_once()
    score_seconds = median_time(score_once, max(3, steps // 3))
    return dict(compile_s=first_seconds, step_s=step_seconds, score_img_s=score_batch / score_seconds)


def _torch_vgg(spec, size: int):
    """(model, backbone parameters, head parameters): the VGG preset in plain PyTorch."""
    from torch import nn

    layers, channels = [], 3
    for width, depth in zip(spec.block_widths, spec.block_depths):
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2))
    side = size // 32
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side * side, spec.fc_width), nn.ReLU(inplace=True),
                          nn.Dropout(spec.dropout), nn.Linear(spec.fc_width, spec.fc_width), nn.ReLU(inplace=True),
                          nn.Dropout(spec.dropout), nn.Linear(spec.fc_width, 1))
    head = list(model[-1].parameters())
    return model, [p for p in model.parameters() if all(p is not h for h in head)], head


def _torch_lite(spec, size: int):
    """(model, backbone parameters, head parameters): the reference EfficientNet-Lite (frozen BatchNorm) with a
    linear ranking layer on its pooled feature."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    class Ranked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = EfficientNet.from_name(spec.architecture.replace("_", "-"), image_size=size)
            self.head = torch.nn.Linear(1280, 1)

        def train(self, mode: bool = True):
            super().train(mode)
            for module in self.backbone.modules():  # BatchNorm frozen, as relrank's
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()
            return self

        def forward(self, x):
            return self.head(self.backbone.extract_features(x).mean((2, 3)))

    model = Ranked()
    backbone = [p for name, p in model.backbone.named_parameters() if not name.startswith("_fc")]
    return model, backbone, list(model.head.parameters())


def worker(framework: str, preset: str) -> None:
    result = (run_jax if framework == "jax" else run_torch)(preset)
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(framework: str, preset: str, runs: int) -> dict:
    rows = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, __file__, f"--worker={framework}", f"--presets={preset}"],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{framework} {preset} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def versions() -> str:
    import jax
    import torch

    return f"jax {jax.__version__}, torch {torch.__version__}, python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="vgg16_small,vgg16")
    parser.add_argument("--runs", type=int, default=3, help="whole-process runs per framework and preset")
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.presets)
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; {versions()}")
    print(f"{'preset':12s} {'figure':22s} {'relrank':>10s} {'PyTorch':>10s} {'ratio':>6s}")
    for preset in args.presets.split(","):
        size, pairs, score_batch, _ = PRESETS[preset]
        jax_row, torch_row = measure("jax", preset, args.runs), measure("torch", preset, args.runs)
        figures = [(f"train step, {pairs} pairs (ms)", "step_s", 1000), ("compile / 1st call (s)", "compile_s", 1),
                   (f"scoring b{score_batch} (img/s)", "score_img_s", 1), ("peak memory (MiB)", "peak_mib", 1)]
        for label, key, scale in figures:
            ratio = jax_row[key] / torch_row[key] if key != "score_img_s" else torch_row[key] / jax_row[key]
            print(f"{preset:12s} {label:22s} {jax_row[key] * scale:10.1f} {torch_row[key] * scale:10.1f} {ratio:6.2f}")
    print("ratio = relrank time (or memory) / PyTorch's; for scoring, PyTorch's img/s / relrank's: below 1 relrank wins")


if __name__ == "__main__":
    main()
