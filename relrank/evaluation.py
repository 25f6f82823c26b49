"""The paper's metric: the percentage of correctly ordered test pairs."""

from __future__ import annotations

from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from relrank.data import Pairs


def pair_accuracy(scores: np.ndarray, pairs: Pairs) -> float:
    """Percent of pairs ordered as annotated. Ground-truth ties are skipped; a predicted tie is wrong."""
    score_a, score_b = scores[pairs.a], scores[pairs.b]
    predicted = np.where(score_a > score_b, 1.0, np.where(score_a < score_b, 0.0, 0.5))
    counted = pairs.target != 0.5
    if not counted.any():
        return float("nan")
    return 100.0 * float(np.mean(predicted[counted] == pairs.target[counted]))


def score_all(score_fn: Callable, images: np.ndarray, batch_images: int, desc: str = "scoring") -> np.ndarray:
    """Scores of every image in `images` (uint8 [N, H, W, 3]), each computed once, in fixed-size batches."""
    n = len(images)
    out = np.empty(n, np.float32)
    for start in tqdm(range(0, n, batch_images), desc=desc, unit="batch", leave=False):
        chunk = images[start : start + batch_images]
        padded = np.concatenate([chunk, np.zeros((batch_images - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        out[start : start + len(chunk)] = np.asarray(score_fn(padded))[: len(chunk)]
    return out
