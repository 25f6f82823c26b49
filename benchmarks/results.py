"""Train and evaluate a recipe on a dataset as a user would, and append the result to RESULTS.md.

    python benchmarks/results.py --dataset=pubfig --recipe=scratch --manual_dir=PATH/pubfig
    python benchmarks/results.py --dataset=pubfig --recipe=paper --model=vgg16_small --manual_dir=PATH/pubfig
    python benchmarks/results.py --dataset=pubfig --recipe=scratch --separately=Male,Smiling --manual_dir=...
    python benchmarks/results.py --sparse_bed=pubfig:500 --recipe=scratch --seeds=3

By default all attributes train jointly, in one `train.py --attr=all` run. `--separately=A,B`
instead trains one run per listed attribute (`--separately=all`: every attribute), to compare
the cost of separate runs with the joint one. `--seeds=N` repeats the whole with seeds 0..N-1
and reports the mean +- std over seeds of the mean accuracy, the per-attribute means, the wall
time of one seed and how many runs did not learn (relrank/train/monitor.py). `--sparse_bed=SOURCE:N`
first writes the sparse-pair test bed of benchmarks/sparse_pairs.py (N training pairs per
attribute, 40% of them ties; PubFig's from ../shared/data/pubfig or --pubfig) and trains on it
as `--dataset=pairs_csv`. Every other flag goes
to train.py unchanged. The wall time is that of the whole train.py process (data loading,
compilation, training and evaluation); the accuracy is the latest checkpoint's on all test
pairs (the paper's protocol).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "RESULTS.md")
HEADER = """# Results

One row per run of the command in its row (appended by `benchmarks/results.py`): test pair accuracy
(%, the paper's protocol: all test pairs, ground-truth ties skipped, latest checkpoint), the wall
time of the training process(es) from start to end, the machine and the commit.

| date | dataset | command | runs | mean | per attribute | wall | machine | commit |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
"""


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import jax

        device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    except Exception:  # noqa: BLE001 - the description only
        device = "?"
    return f"{platform.machine()} {cores} cores, {device}"


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def train(flags: list[str], attr: str, workdir: str) -> tuple[dict, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), f"--attr={attr}",
                             f"--workdir={workdir}", *flags], cwd=REPO, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if result.returncode not in (0, 3):  # 3: trained, but did not learn (counted in the row)
        sys.exit(f"train.py failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f), wall


def run_seed(args, flags: list[str], root: str, seed: int) -> tuple[dict, float, str, int]:
    """({attribute: test accuracy}, wall seconds, what ran, how many runs did not learn) of one seed."""
    flags = [*flags, f"--seed={seed}"]
    if args.separately:
        import dataclasses

        from relrank.cli.train import TrainOptions, parser
        from relrank.configs import resolve
        from relrank.data.datasets import load_dataset_for

        known = vars(parser().parse_known_args(flags)[0])
        options = {f.name for f in dataclasses.fields(TrainOptions)}
        config = resolve({k: v for k, v in known.items() if k not in options}).config
        attrs = load_dataset_for(config).attributes if args.separately == "all" else args.separately.split(",")
        per_attr, wall, failed = {}, 0.0, 0
        for attr in attrs:
            summary, seconds = train(flags, attr, os.path.join(root, attr))
            per_attr[attr], wall = summary["test_accuracy"], wall + seconds
            failed += bool(summary.get("did_not_learn"))
        return per_attr, wall, f"{len(attrs)} separate", failed
    summary, wall = train(flags, "all", root)
    per_attr = summary.get("test_accuracy_per_attr") or {summary["attr"]: summary["test_accuracy"]}
    return per_attr, wall, "1 joint", int(bool(summary.get("did_not_learn")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--separately", default="", help="train these attributes (comma-separated, or all) "
                        "one run each instead of one joint run")
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1 (default: 1)")
    parser.add_argument("--sparse_bed", default="", help="SOURCE:PAIRS, e.g. pubfig:500 or synthetic:100: train on "
                        "that sparse-pair test bed (benchmarks/sparse_pairs.py)")
    parser.add_argument("--pubfig", default=os.path.join(REPO, "..", "shared", "data", "pubfig"),
                        help="PubFig's folder, for --sparse_bed=pubfig:N")
    parser.add_argument("--workdir", default="", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--no_write", action="store_true", help="print the row without appending it to RESULTS.md")
    args, flags = parser.parse_known_args()
    dataset = next((f.split("=", 1)[1] for f in flags if f.startswith("--dataset=")), "synthetic")
    root = args.workdir or tempfile.mkdtemp(prefix="relrank-results-")
    if args.sparse_bed:
        import sparse_pairs

        source, pairs = args.sparse_bed.split(":")
        bed = os.path.join(root, "bed")
        if not os.path.exists(os.path.join(bed, "pairs.csv")):
            if source == "pubfig":
                sparse_pairs.pubfig_bed(args.pubfig, bed, int(pairs), sparse_pairs.TIE_SHARE, 0, False)
            else:
                sparse_pairs.synthetic_bed(bed, int(pairs), sparse_pairs.TIE_SHARE, 0, False)
        flags += ["--dataset=pairs_csv", f"--manual_dir={bed}"]
        dataset = f"{source}, {pairs} pairs per attribute ({100 * sparse_pairs.TIE_SHARE:.0f}% ties), as pairs_csv"

    seeds = [run_seed(args, flags, os.path.join(root, f"seed_{seed}"), seed) for seed in range(args.seeds)]
    runs = seeds[0][2]
    per_attr = {attr: float(np.mean([s[0][attr] for s in seeds])) for attr in seeds[0][0]}
    means = [float(np.mean(list(s[0].values()))) for s in seeds]
    wall = float(np.mean([s[1] for s in seeds]))
    failed = sum(s[3] for s in seeds)
    mean = f"**{np.mean(means):.2f}**" + (f" +- {np.std(means):.2f} ({len(seeds)} seeds: "
                                          f"{', '.join(f'{m:.2f}' for m in means)})" if len(seeds) > 1 else "")
    if failed:
        mean += f", {failed} did not learn"
    cells = " ".join(f"{attr} {value:.2f}" for attr, value in per_attr.items())
    command = " ".join(["python benchmarks/results.py"] + [a for a in sys.argv[1:] if not a.startswith(
        ("--workdir", "--data_dir", "--no_write", "--pubfig"))])
    row = (f"| {datetime.date.today()} | {dataset} | `{command}` | {runs} | {mean} | {cells} | "
           f"{wall / 60:.1f} min{' per seed' if len(seeds) > 1 else ''} | {machine()} | {commit()} |")
    print(row)
    print(f"runs in {root}")
    if not args.no_write:
        new = not os.path.exists(RESULTS)
        with open(RESULTS, "a") as f:
            f.write((HEADER if new else "") + row + "\n")
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
