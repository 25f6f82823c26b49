"""The paper's baseline run: RankSVM on frozen features, evaluated with the same pair accuracy.

Features are the dataset's own (`feat`, e.g. PubFig/OSR GIST) or fc7 of the
VGG-16 backbone (the pretrained weights of --weights, not fine-tuned).
A run writes <workdir>/ranksvm.npz (the weights and image features used) and summary.json.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from relrank.config import Config, dumps
from relrank.data import RankingData, load_dataset_for
from relrank.errors import UserError
from relrank.evaluation import pair_accuracy
from relrank.ranksvm import fit_ranksvm
from relrank.train_step import fc7_features, make_task
from relrank.weights import initial_params
from relrank.workdir import check_usable, exclusive, write_atomic

RESULT_FILE = "ranksvm.npz"


def dataset_features(data: RankingData, indices: np.ndarray) -> np.ndarray:
    if "feat" not in data.source[int(indices[0])]:
        raise UserError(f"dataset {data.name!r} ships no features; use --ranksvm_features=fc7 with --weights")
    return np.stack([np.asarray(data.source[int(i)]["feat"], np.float64) for i in indices])


def backbone_features(config: Config, data: RankingData, indices: np.ndarray) -> tuple[np.ndarray, Config]:
    """fc7 of the backbone (pretrained by --weights, not fine-tuned) for the images at `indices`."""
    params, config = initial_params(config)
    images = data.load_images(indices, config.image_size)
    return fc7_features(make_task(config), params, images, config.eval_batch_images).astype(np.float64), config


def train_ranksvm(config: Config, workdir: str) -> dict:
    """Fit the RankSVM on the training pairs of `config.attr`; evaluate on the test pairs."""
    started = time.perf_counter()
    check_usable(workdir)
    data = load_dataset_for(config)
    train, test = data.pairs("train", config.attr), data.pairs("test", config.attr)
    indices = np.unique(np.concatenate([train.images(), test.images()]))
    if config.ranksvm_features == "dataset":
        features = dataset_features(data, indices)
    else:
        features, config = backbone_features(config, data, indices)
    table = np.zeros((int(indices.max()) + 1, features.shape[1]))
    table[indices] = features
    w = fit_ranksvm(table, train, c=config.ranksvm_c)
    accuracy = pair_accuracy(table @ w, test)
    summary = dict(dataset=config.dataset, attr=config.attr, workdir=workdir, method="ranksvm",
                   features=config.ranksvm_features, test_accuracy=accuracy, final_step=0, compile_seconds=0.0,
                   wall_seconds=round(time.perf_counter() - started, 1))
    with exclusive(workdir):
        result = os.path.join(workdir, RESULT_FILE)
        np.savez(result + ".tmp.npz", w=w, image_indices=indices, features=features,
                 config=json.dumps(config.to_json()))
        os.replace(result + ".tmp.npz", result)
        write_atomic(os.path.join(workdir, "config.json"), dumps(config))
        write_atomic(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))
    return summary


def evaluate_ranksvm(run_dir: str, split: str = "test", data_dir: str = "") -> dict:
    """Re-score a saved RankSVM run with the shared evaluation code."""
    saved = np.load(os.path.join(run_dir, RESULT_FILE))
    config = Config.from_json(json.loads(str(saved["config"])))
    data = load_dataset_for(config, data_dir)
    pairs = data.pairs(split, config.attr)
    scores = np.zeros(int(saved["image_indices"].max()) + 1)
    scores[saved["image_indices"]] = saved["features"] @ saved["w"]
    return dict(workdir=run_dir, dataset=config.dataset, attr=config.attr, split=split, step=0,
                accuracy=pair_accuracy(scores, pairs), num_pairs=len(pairs), num_images=len(pairs.images()))
