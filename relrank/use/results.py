"""Results of finished runs, deep or RankSVM: each evaluated by the one evaluator, seeds pooled, means taken.

A run loads as a scorer of dataset images (`load_scorer`, which dispatches on
the run's `config.method`); `relrank.evaluation.evaluator` only asks it for scores.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np

from relrank.data.datasets import load_dataset_for
from relrank.data.pairs import hold_out, index_images
from relrank.errors import UserError
from relrank.evaluation.evaluator import evaluate
from relrank.run.finished import SUMMARY_FILE, read_config
from relrank.train.monitor import described


def did_not_learn(run_dir: str) -> str:
    """Why the run's training said it did not learn ('collapsed at step 290: ...'), or '' (learned, or no summary)."""
    try:
        with open(os.path.join(run_dir, SUMMARY_FILE)) as f:
            failure = json.load(f).get("did_not_learn")
    except (OSError, ValueError):
        return ""
    return f"{described(failure)}: {failure['seen']}" if failure else ""


def load_scorer(run_dir: str, which: str = "latest"):
    """The run's scorer: `.config`, `.step` and `.score_dataset_images(data, ids)`."""
    if read_config(run_dir).method == "ranksvm":
        from relrank.use.ranksvm import RankSVMScorer

        return RankSVMScorer(run_dir)
    from relrank.use.ranker import load

    return load(run_dir, which)


def evaluate_run(run_dir: str, which: str = "latest", split: str = "test", data_dir: str = "") -> list[dict]:
    """Score each image of `split` once with the run's checkpoint `which`; one row per attribute with its
    pair accuracy. `split` 'val' is the run's own validation split (--val_fraction)."""
    scorer = load_scorer(run_dir, which)
    config = scorer.config
    data = load_dataset_for(config, data_dir)
    if split == "val":
        if not config.val_fraction:
            raise UserError(f"run {run_dir} held out no validation split (it was trained without --val_fraction)")
        pairs = hold_out(data.pairs_of("train", config.attrs), config.val_fraction, config.seed)[1]
    else:
        pairs = data.pairs_of(split, config.attrs)
    ids, pairs = index_images(pairs)
    evaluation = evaluate(lambda images: scorer.score_dataset_images(data, images), ids, pairs)
    failure = did_not_learn(run_dir)
    # What the run is an instance of: every setting but the seed; a joint run's attribute list, but not which
    # attribute a single-attribute run ranks (runs per attribute of one setting make one experiment).
    experiment = {k: v for k, v in config.meaning().items() if k not in ("seed", "attr")}
    experiment["attributes"] = config.attr if len(config.attrs) > 1 else "one"
    return [dict(workdir=run_dir, dataset=config.dataset, seed=config.seed, split=split, step=scorer.step, **row,
                 did_not_learn=failure, experiment=experiment)
            for row in evaluation.rows()]


def pool_seeds(rows: list[dict]) -> list[dict]:
    """One group per attribute and experiment (every setting but the seed equal): its seeds' mean and std.

    Runs that differ in anything but the seed are never pooled; two runs of one experiment with the same
    seed are an error. Each group's `label` names the settings that tell it apart from the other groups
    of its dataset ('' when there is one experiment).
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["attr"], _key(row["experiment"])), []).append(row)
    pooled = []
    for (dataset, attr, _), members in groups.items():
        repeated = [seed for seed, n in Counter(r["seed"] for r in members).items() if n > 1]
        if repeated:
            twins = [r["workdir"] for r in members if r["seed"] == repeated[0]]
            raise UserError(f"{twins[0]} and {twins[1]} are runs of the same settings with the same seed "
                            f"{repeated[0]} (not two seeds); evaluate them one at a time, or move one away")
        accuracy = [r["accuracy"] for r in members]
        pooled.append(dict(dataset=dataset, attr=attr, seeds=[r["seed"] for r in members],
                           workdirs=[r["workdir"] for r in members], num_pairs=members[0]["num_pairs"],
                           counted_pairs=members[0].get("counted_pairs"),
                           mean=float(np.mean(accuracy)), std=float(np.std(accuracy)),
                           steps=sorted({r["step"] for r in members}),
                           did_not_learn=sum(bool(r["did_not_learn"]) for r in members),
                           experiment=members[0]["experiment"]))
    for group in pooled:
        group["label"] = _label(group, [g["experiment"] for g in pooled if g["dataset"] == group["dataset"]])
    return pooled


def dataset_means(groups: list[dict]) -> list[dict]:
    """The mean over attributes of each dataset and experiment with several evaluated attributes (never across
    datasets or experiments)."""
    by_experiment: dict[tuple, list[dict]] = {}
    for group in groups:
        if np.isfinite(group["mean"]):  # an attribute with nothing to evaluate (all ties) has no accuracy
            by_experiment.setdefault((group["dataset"], _key(group["experiment"])), []).append(group)
    return [dict(dataset=members[0]["dataset"], label=members[0]["label"], attributes=len(members),
                 mean=float(np.mean([g["mean"] for g in members])))
            for members in by_experiment.values() if len(members) > 1]


def _key(experiment: dict) -> str:
    return json.dumps(experiment, sort_keys=True, default=str)


def _label(group: dict, experiments: list[dict]) -> str:
    """The settings in which `group`'s experiment differs from another of the same dataset, e.g. 'epochs=2 model=vgg_cpu'."""
    differing = sorted({k for e in experiments for k in e if e.get(k) != group["experiment"].get(k)})
    return " ".join(f"{k}={_short(group['experiment'].get(k))}" for k in differing if k != "data_identity") + (
        f" data={group['experiment'].get('data_identity')}" if "data_identity" in differing else "")


def _short(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
