"""Finished runs, deep or RankSVM, evaluated under the paper's protocol by one code path.

A run loads as a scorer of dataset images (`load_scorer`, which dispatches on
the run's `config.method`); evaluation only asks it for scores, as big_vision's
evaluators take a predict function and do not care what produced it.
"""

from __future__ import annotations

import json
import os

from relrank.config import Config
from relrank.data import load_dataset_for
from relrank.errors import UserError
from relrank.metrics import pair_accuracy

CONFIG_FILE = "config.json"


def is_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def find_runs(workdir: str) -> list[str]:
    """`workdir` itself if it holds a run, else its sub-directories that do (one per attribute)."""
    if not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir} does not exist")
    if is_run(workdir):
        return [workdir]
    runs = sorted(os.path.join(workdir, d) for d in os.listdir(workdir) if is_run(os.path.join(workdir, d)))
    if not runs:
        raise UserError(f"workdir {workdir} holds no checkpoint (nor do its sub-directories)")
    return runs


def read_config(run_dir: str) -> Config:
    try:
        with open(os.path.join(run_dir, CONFIG_FILE)) as f:
            return Config.from_json(json.load(f))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise UserError(f"cannot read {os.path.join(run_dir, CONFIG_FILE)}: {error}") from None


def load_scorer(run_dir: str, which: str = "latest"):
    """The run's scorer: `.config`, `.step` and `.score_dataset_images(data, ids)`."""
    if read_config(run_dir).method == "ranksvm":
        from relrank.ranksvm import RankSVMScorer

        return RankSVMScorer(run_dir)
    from relrank.ranker import load

    return load(run_dir, which)


def evaluate_run(run_dir: str, which: str = "latest", split: str = "test", data_dir: str = "") -> dict:
    """Score each image of `split` once with the run's checkpoint `which`; return the pair accuracy."""
    scorer = load_scorer(run_dir, which)
    config = scorer.config
    data = load_dataset_for(config, data_dir)
    ids, pairs = data.indexed_pairs(split, config.attr)
    return dict(
        workdir=run_dir, dataset=config.dataset, attr=config.attr, split=split, step=scorer.step,
        accuracy=pair_accuracy(scorer.score_dataset_images(data, ids), pairs), num_pairs=len(pairs),
        num_images=len(ids),
    )
