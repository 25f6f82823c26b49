"""`relrank evaluate` (and `evaluate.py`): the paper's metric for finished runs, seeds pooled as mean +- std."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

DESCRIPTION = ("Evaluate trained rankers: percentage of correctly ordered test pairs (ground-truth ties skipped, "
               "predicted ties counted wrong), one row per attribute.")


def parser(prog: str = "relrank evaluate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add = parser.add_argument
    add("--workdir", required=True, help="a run's workdir, or a folder of runs (per attribute or seed, searched "
        "recursively); runs of the same attribute with different seeds are reported as mean +- std")
    add("--checkpoint", default="latest", help="latest (default), best (highest validation accuracy, or test accuracy "
        "for runs without --val_fraction) or a step number")
    add("--split", default="test", help="pair set to evaluate: test (default), val (the run's validation split) or "
        "another pair set of the dataset")
    add("--data_dir", default="", help="TFDS data directory, if not the one the run was trained with")
    add("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: list[str], prog: str = "relrank evaluate") -> None:
    args = parser(prog).parse_args(argv)  # before the imports, which load JAX: --help stays quick
    from relrank.run.finished import find_runs
    from relrank.evaluation.evaluator import few_pairs_warning
    from relrank.use.results import dataset_means, evaluate_run, pool_seeds

    results = [row for run in find_runs(args.workdir)
               for row in evaluate_run(run, args.checkpoint, args.split, args.data_dir)]
    groups = pool_seeds(results)
    means = dataset_means(groups)
    if args.json:
        print(json.dumps(dict(results=results, attributes=groups, means=means), indent=2))
        return
    labelled = any(g["label"] for g in groups)
    print(f"{'dataset':10s} {'attribute':20s} {'seeds':>5s} {'pairs':>9s} {'accuracy':>16s}"
          + ("  settings" if labelled else ""))
    for g in groups:
        runs = len(g["seeds"])
        spread = f" +- {g['std']:.2f}" if runs > 1 else ""
        accuracy = f"{g['mean']:7.2f}%{spread:>8s}" if np.isfinite(g["mean"]) else f"{'no pairs':>16s}"
        note = f"  DID NOT LEARN ({g['did_not_learn']} of {runs} run{'s' if runs > 1 else ''})" if g["did_not_learn"] else ""
        print(f"{g['dataset']:10s} {g['attr']:20s} {runs:5d} {g['num_pairs']:9d} {accuracy}"
              + (f"  {g['label']}" if labelled else "") + note)
    for m in means:
        attributes = f"mean ({m['attributes']} attributes)"
        print(f"{m['dataset']:10s} {attributes:20s} {'':5s} {'':9s} {m['mean']:7.2f}%{'':8s}"
              + (f"  {m['label']}" if labelled else ""))
    steps = sorted({r["step"] for r in results})
    seeds = " (+- std over seeds, numpy ddof=0)" if any(len(g["seeds"]) > 1 for g in groups) else ""
    print(f"checkpoint {args.checkpoint}: step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))}{seeds}")
    for g in groups:
        if not np.isfinite(g["mean"]):
            print(f"{g['dataset']}/{g['attr']}: nothing to evaluate: every {args.split} pair is a tie (ties are skipped)")
    for workdir, why in sorted({(r["workdir"], r["did_not_learn"]) for r in results if r["did_not_learn"]}):
        print(f"{workdir}: did not learn: {why}")
    warning = few_pairs_warning({g["attr"]: g["counted_pairs"] for g in groups}, f"{args.split} pairs that are not ties")
    if warning:
        print(warning, file=sys.stderr)
