"""The paper's baseline: Parikh & Grauman's RankSVM (ICCV 2011) on frozen features, fitted, saved and scored.

    min_w  1/2 |w|^2 + C sum_ordered max(0, 1 - w.(x_more - x_less))^2 + C sum_similar (w.(x_a - x_b))^2

the primal, squared-hinge form of Chapelle's RankSVM that Parikh & Grauman
extended with similarity (tie) pairs, with one C for both kinds of pair
(`Config.ranksvm_c`, their 0.1). Solved by Newton's method on the active set
(the objective is quadratic once the violated ordered pairs are fixed), with a
backtracking line search.

Features are the dataset's own (`feat`, e.g. PubFig/OSR GIST) or fc7 of the
VGG-16 backbone (the pretrained weights of --weights, not fine-tuned). One w is
fitted per attribute of the run. A run writes <workdir>/ranksvm.npz (the
weights [features, attributes], and the features of the images it used),
config.json and summary.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from relrank.config import Config, dumps
from relrank.data.datasets import RankingData, load_dataset_for
from relrank.data.pairs import Pairs, index_images
from relrank.errors import UserError
from relrank.evaluation.evaluator import evaluate
from relrank.run.workdir import check_usable, exclusive, write_atomic

RESULT_FILE = "ranksvm.npz"


def pair_differences(features: np.ndarray, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """(x_more - x_less) for ordered pairs and (x_a - x_b) for ties."""
    ordered = pairs.target != 0.5
    sign = np.where(pairs.target[ordered] == 1.0, 1.0, -1.0)[:, None]
    diff = features[pairs.a] - features[pairs.b]
    return sign * diff[ordered], diff[~ordered]


def objective(w: np.ndarray, ordered: np.ndarray, similar: np.ndarray, c: float) -> float:
    margin = np.maximum(0.0, 1.0 - ordered @ w)
    return 0.5 * w @ w + c * (margin @ margin + np.sum((similar @ w) ** 2))


def fit_ranksvm(features: np.ndarray, pairs: Pairs, c: float, max_iterations: int = 50) -> np.ndarray:
    """The ranking weights w (score = features @ w) learnt from annotated pairs."""
    ordered, similar = pair_differences(np.asarray(features, np.float64), pairs)
    dim = features.shape[1]
    similar_gram = similar.T @ similar
    w = np.zeros(dim)
    value = objective(w, ordered, similar, c)
    for _ in range(max_iterations):
        active = ordered[ordered @ w < 1.0]
        hessian = np.eye(dim) + 2 * c * (active.T @ active + similar_gram)
        target = np.linalg.solve(hessian, 2 * c * active.sum(axis=0))  # minimiser for this active set
        step = 1.0
        while True:
            candidate = w + step * (target - w)
            new_value = objective(candidate, ordered, similar, c)
            if new_value <= value or step < 1e-8:
                break
            step /= 2
        converged = value - new_value <= 1e-10 * max(1.0, abs(value))
        w, value = candidate, new_value
        if converged:
            break
    return w


def image_features(config: Config, data: RankingData, ids: np.ndarray) -> np.ndarray:
    """The frozen features of the dataset images `ids` that `config.ranksvm_features` names, float64."""
    if config.ranksvm_features == "dataset":
        if "feat" not in data.source[int(ids[0])]:
            raise UserError(f"dataset {data.name!r} ships no features; use --ranksvm_features=fc7 with --weights")
        return np.stack([np.asarray(data.source[int(i)]["feat"], np.float64) for i in ids])
    from relrank.use.ranker import Ranker  # JAX: only for fc7 features

    backbone = Ranker.untrained(config)  # the pretrained backbone, not fine-tuned
    return backbone.features(data.load_images(ids, config.image_size)).astype(np.float64)


class RankSVMScorer:
    """A saved RankSVM run: scores of dataset images from the features it was fitted and tested with."""

    def __init__(self, run_dir: str):
        path = os.path.join(run_dir, RESULT_FILE)
        try:
            with np.load(path, allow_pickle=False) as saved:
                self.config = Config.from_json(json.loads(str(saved["config"])))
                self.features = saved["features"]
                self.w = saved["w"].reshape(self.features.shape[1], -1)  # [features, attributes]
                self.rows = {int(i): row for row, i in enumerate(saved["image_indices"])}
        except Exception as error:  # zipfile, zlib, KeyError, ValueError ... for a damaged file
            raise UserError(f"{path} is damaged ({type(error).__name__}: {str(error)[:120]}); train the RankSVM "
                            f"again (it takes seconds)") from None
        self.step = 0

    def score_dataset_images(self, data: RankingData, ids: np.ndarray) -> np.ndarray:
        """Scores [len(ids), attributes]."""
        missing = [int(i) for i in ids if int(i) not in self.rows]
        if missing:
            raise UserError(f"this RankSVM run holds no features for {len(missing)} of those images "
                            f"(it saved those of its train and test pairs)")
        return self.features[[self.rows[int(i)] for i in ids]] @ self.w


def train_ranksvm(config: Config, workdir: str, data: RankingData | None = None) -> dict:
    """Fit one RankSVM per attribute of `config.attrs` on its training pairs; evaluate on the test pairs."""
    started = time.perf_counter()
    check_usable(workdir)
    data = data or load_dataset_for(config)
    config = dataclasses.replace(config, data_identity=data.identity)
    train_pairs, test_pairs = data.pairs_of("train", config.attrs), data.pairs_of("test", config.attrs)
    ids, indexed = index_images({**{("train", a): p for a, p in train_pairs.items()},
                                 **{("test", a): p for a, p in test_pairs.items()}})
    features = image_features(config, data, ids)
    w = np.stack([fit_ranksvm(features, indexed["train", a], c=config.ranksvm_c) for a in config.attrs], axis=1)
    test = evaluate(lambda x: x @ w, features, {a: indexed["test", a] for a in config.attrs})
    summary = dict(dataset=config.dataset, attr=config.attr, workdir=workdir, method="ranksvm",
                   features=config.ranksvm_features, test_accuracy=test.mean,
                   test_accuracy_per_attr=test.accuracy, wall_seconds=round(time.perf_counter() - started, 1))
    with exclusive(workdir):
        result = os.path.join(workdir, RESULT_FILE)
        np.savez(result + ".tmp.npz", w=w, image_indices=ids, features=features, config=json.dumps(config.to_json()))
        os.replace(result + ".tmp.npz", result)
        write_atomic(os.path.join(workdir, "config.json"), dumps(config))
        write_atomic(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))
    return summary
