"""Train and evaluate a recipe on a dataset as a user would, and append the result to RESULTS.md.

    python benchmarks/results.py --dataset=pubfig --config=scratch --manual_dir=PATH/pubfig
    python benchmarks/results.py --dataset=pubfig --config=paper --model=vgg16_small --manual_dir=PATH/pubfig
    python benchmarks/results.py --dataset=pubfig --config=scratch --separately=Male,Smiling --manual_dir=...

By default all attributes train jointly, in one `train.py --attr=all` run. `--separately=A,B`
instead trains one run per listed attribute (`--separately=all`: every attribute), to compare
the cost of separate runs with the joint one. Every other flag goes to train.py unchanged. The
wall time is that of the whole train.py process (data loading, compilation, training and
evaluation); the accuracy is the latest checkpoint's on all test pairs (the paper's protocol).
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
    if result.returncode:
        sys.exit(f"train.py failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--separately", default="", help="train these attributes (comma-separated, or all) "
                        "one run each instead of one joint run")
    parser.add_argument("--workdir", default="", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--no_write", action="store_true", help="print the row without appending it to RESULTS.md")
    args, flags = parser.parse_known_args()
    dataset = next((f.split("=", 1)[1] for f in flags if f.startswith("--dataset=")), "synthetic")
    root = args.workdir or tempfile.mkdtemp(prefix="relrank-results-")

    if args.separately:
        from relrank.cli import train_parser
        from relrank.config import make_config
        from relrank.data import load_dataset_for

        known = vars(train_parser().parse_known_args(flags)[0])
        config = make_config(**{k: v for k, v in known.items() if k not in ("attr", "workdir", "stop_after_steps",
                                                                            "seeds")})
        attrs = load_dataset_for(config).attributes if args.separately == "all" else args.separately.split(",")
        per_attr, wall = {}, 0.0
        for attr in attrs:
            summary, seconds = train(flags, attr, os.path.join(root, attr))
            per_attr[attr], wall = summary["test_accuracy"], wall + seconds
        runs = f"{len(attrs)} separate"
    else:
        summary, wall = train(flags, "all", root)
        per_attr = summary.get("test_accuracy_per_attr") or {summary["attr"]: summary["test_accuracy"]}
        runs = "1 joint"
    mean = sum(per_attr.values()) / len(per_attr)
    cells = " ".join(f"{attr} {value:.2f}" for attr, value in per_attr.items())
    command = " ".join(["python benchmarks/results.py"] + [a for a in sys.argv[1:] if not a.startswith(
        ("--workdir", "--data_dir", "--no_write"))])
    row = (f"| {datetime.date.today()} | {dataset} | `{command}` | {runs} | **{mean:.2f}** | {cells} | "
           f"{wall / 60:.1f} min | {machine()} | {commit()} |")
    print(row)
    print(f"runs in {root}")
    if not args.no_write:
        new = not os.path.exists(RESULTS)
        with open(RESULTS, "a") as f:
            f.write((HEADER if new else "") + row + "\n")
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
