"""fc7 embeddings of a dataset's test images before and after fine-tuning (paper figure 5)."""

from __future__ import annotations

import numpy as np

from relrank.use.ranker import Ranker


def before_and_after(ranker: Ranker, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fc7 features with the run's initial weights (its --weights file, or its seed's init) and its trained ones."""
    initial = Ranker.untrained(ranker.config)
    return initial.features(images), ranker.features(images)


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
