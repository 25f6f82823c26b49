"""fc7 embeddings of a dataset's test images before and after fine-tuning (paper figure 5)."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from relrank.preprocess import normalize
from relrank.ranker import Ranker
from relrank.train_step import make_task
from relrank.weights import initial_params


def fc7(task, params, images: np.ndarray, batch: int) -> np.ndarray:
    model = nnx.merge(task.graphdef, params)
    features = jax.jit(lambda x: model.features(normalize(x, task.config.preprocessing)))
    return np.concatenate([np.asarray(features(images[i : i + batch])) for i in range(0, len(images), batch)])


def before_and_after(ranker: Ranker, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fc7 features with the run's initial weights (its --weights file, or its seed's init) and its trained ones."""
    initial, config = initial_params(ranker.config)
    batch = ranker.config.eval_batch_images
    return fc7(make_task(config), initial, images, batch), fc7(ranker.task, ranker.params, images, batch)


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
