"""fc7 embeddings of a dataset's test images before and after fine-tuning (paper figure 5)."""

from __future__ import annotations

import numpy as np

from relrank.ranker import Ranker
from relrank.train_step import fc7_features, make_task
from relrank.weights import initial_params


def before_and_after(ranker: Ranker, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fc7 features with the run's initial weights (its --weights file, or its seed's init) and its trained ones."""
    initial, config = initial_params(ranker.config)
    batch = ranker.config.eval_batch_images
    return (fc7_features(make_task(config), initial, images, batch),
            fc7_features(ranker.task, ranker.params, images, batch))


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
