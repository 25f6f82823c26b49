"""The paper's metric: the percentage of correctly ordered test pairs."""

from __future__ import annotations

import numpy as np

from relrank.data.pairs import Pairs


def pair_accuracy(scores: np.ndarray, pairs: Pairs) -> float:
    """Percent of pairs ordered as annotated. Ground-truth ties are skipped; a predicted tie is wrong."""
    score_a, score_b = scores[pairs.a], scores[pairs.b]
    predicted = np.where(score_a > score_b, 1.0, np.where(score_a < score_b, 0.0, 0.5))
    counted = pairs.target != 0.5
    if not counted.any():
        return float("nan")
    return 100.0 * float(np.mean(predicted[counted] == pairs.target[counted]))


def accuracy_per_attribute(scores: np.ndarray, pairs: dict[str, Pairs]) -> dict[str, float]:
    """Pair accuracy of each attribute, from scores [images, attributes] (columns in the order of `pairs`)."""
    return {attr: pair_accuracy(scores[:, k], p) for k, (attr, p) in enumerate(pairs.items())}
