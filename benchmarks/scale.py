"""A dataset far larger than the paper's through the streaming pipeline: host memory must not grow with it.

    python benchmarks/scale.py [--data_dir=DIR] [--steps=200]

Prepares `synthetic_large` (100,000 images, 1,000,002 pairs; a few minutes once), then
trains vgg16_small through the streaming input pipeline on it and, side by side, on the
embedded `synthetic` set (1,500 images, 21,000 pairs), each in its own process. Prints
the preparation time, the pair index's size in memory, and each run's peak resident memory
(the training process, and the largest grain worker): their ratio should stay near 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(dataset: str, data_dir: str, workdir: str, steps: int, workers: int) -> dict:
    command = [sys.executable, os.path.join(REPO, "train.py"), f"--dataset={dataset}", "--attr=all",
               f"--data_dir={data_dir}", f"--workdir={workdir}", "--input_pipeline=streaming",
               f"--data_workers={workers}", f"--stop_after_steps={steps}", "--checkpoint_every_steps=100000"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    summary["process_seconds"] = time.perf_counter() - start
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "relrank_scale_tfds"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import numpy as np

    from relrank.data.datasets import load_dataset
    from relrank.data.pairs import LabelledPairs

    start = time.perf_counter()
    large = load_dataset("synthetic_large", data_dir=args.data_dir)
    prepare_seconds = time.perf_counter() - start
    pairs = LabelledPairs.join([large.pairs("train", attr) for attr in large.attributes])
    index_bytes = sum(np.asarray(getattr(pairs, f)).nbytes for f in ("a", "b", "target", "labelled"))
    n_images = len(large.source)
    n_pairs = sum(len(large.pairs(s, a)) for s in ("train", "test") for a in large.attributes)
    print(f"synthetic_large: {n_images:,} images, {n_pairs:,} pairs; prepared/opened in {prepare_seconds:.0f} s")
    print(f"training pair index: {len(pairs):,} rows in {index_bytes / 2**20:.1f} MiB of numpy arrays "
          f"({index_bytes / len(pairs):.0f} bytes per row); a 224 px image table would take "
          f"{n_images * 224 * 224 * 3 / 2**30:.1f} GiB")
    with tempfile.TemporaryDirectory() as runs:
        rows = {name: train(name, args.data_dir, os.path.join(runs, name), args.steps, args.workers)
                for name in ("synthetic", "synthetic_large")}
    print(f"\n{'dataset':16s} {'images':>8s} {'steps':>6s} {'wall s':>7s} {'peak MiB, process':>18s} "
          f"{'peak MiB, largest worker':>25s}")
    for name, s in rows.items():
        images = len(load_dataset(name, data_dir=args.data_dir).source)
        print(f"{name:16s} {images:8,d} {s['final_step']:6d} {s['process_seconds']:7.0f} "
              f"{s['peak_memory_process_mib']:18.0f} {s['peak_memory_largest_worker_mib']:25.0f}")
    small, big = rows["synthetic"], rows["synthetic_large"]
    print(f"\nratio large/small: process {big['peak_memory_process_mib'] / small['peak_memory_process_mib']:.2f}, "
          f"largest worker {big['peak_memory_largest_worker_mib'] / small['peak_memory_largest_worker_mib']:.2f} "
          f"for {len(load_dataset('synthetic_large', data_dir=args.data_dir).source) / 1500:.0f}x the images")


if __name__ == "__main__":
    main()
