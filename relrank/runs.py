"""Finished runs, deep or RankSVM, evaluated under the paper's protocol by one code path.

A run loads as a scorer of dataset images (`load_scorer`, which dispatches on
the run's `config.method`); evaluation only asks it for scores, as big_vision's
evaluators take a predict function and do not care what produced it.
"""

from __future__ import annotations

import json
import os

from relrank.config import Config
from relrank.data import hold_out, index_images, load_dataset_for
from relrank.errors import UserError
from relrank.learning import described
from relrank.metrics import accuracy_per_attribute

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


def is_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def find_runs(workdir: str) -> list[str]:
    """`workdir` itself if it holds a run, else the runs below it (one per attribute, seed, ...), sorted."""
    if not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir} does not exist")
    if is_run(workdir):
        return [workdir]
    runs = []
    for folder, dirs, _ in os.walk(workdir):
        dirs.sort()
        if is_run(folder):
            runs.append(folder)
            dirs[:] = []  # a run's own folders hold no runs
    if not runs:
        raise UserError(f"workdir {workdir} holds no checkpoint (nor do its sub-directories)")
    return runs


def read_config(run_dir: str) -> Config:
    try:
        with open(os.path.join(run_dir, CONFIG_FILE)) as f:
            return Config.from_json(json.load(f))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise UserError(f"cannot read {os.path.join(run_dir, CONFIG_FILE)}: {error}") from None


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
        from relrank.ranksvm import RankSVMScorer

        return RankSVMScorer(run_dir)
    from relrank.ranker import load

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
    accuracies = accuracy_per_attribute(scorer.score_dataset_images(data, ids), pairs)
    failure = did_not_learn(run_dir)
    return [dict(workdir=run_dir, dataset=config.dataset, attr=attr, seed=config.seed, split=split, step=scorer.step,
                 accuracy=accuracies[attr], num_pairs=len(pairs[attr]), num_images=len(pairs[attr].images()),
                 did_not_learn=failure)
            for attr in config.attrs]
