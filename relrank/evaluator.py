"""Evaluate trained runs under the paper's protocol: accuracy over the test pairs of each attribute."""

from __future__ import annotations

import os

import numpy as np

from relrank import checkpoint
from relrank.baseline import RESULT_FILE, evaluate_ranksvm
from relrank.data import load_dataset_for
from relrank.errors import UserError
from relrank.evaluation import pair_accuracy
from relrank.ranker import load


def is_run(path: str) -> bool:
    return os.path.isdir(checkpoint.checkpoint_dir(path)) or os.path.isfile(os.path.join(path, RESULT_FILE))


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


def evaluate_run(run_dir: str, which: str = "latest", split: str = "test", data_dir: str = "") -> dict:
    """Score each image of `split` once with the checkpoint `which`; return the pair accuracy."""
    if os.path.isfile(os.path.join(run_dir, RESULT_FILE)):
        return evaluate_ranksvm(run_dir, split, data_dir)
    ranker = load(run_dir, which)
    config = ranker.config
    data = load_dataset_for(config, data_dir)
    pairs = data.pairs(split, config.attr)
    ids = pairs.images()
    scores = np.zeros(int(ids.max()) + 1, np.float32)
    scores[ids] = ranker.score(data.load_images(ids, config.image_size, desc=f"loading {split} images"))
    return dict(
        workdir=run_dir, dataset=config.dataset, attr=config.attr, split=split, step=ranker.step,
        accuracy=pair_accuracy(scores, pairs), num_pairs=len(pairs), num_images=len(ids),
    )
