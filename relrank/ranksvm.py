"""The RankSVM baseline with similarity constraints (Parikh & Grauman, ICCV 2011) on frozen features.

    min_w  1/2 |w|^2 + C sum_ordered max(0, 1 - w.(x_more - x_less))^2 + C sum_similar (w.(x_a - x_b))^2

the primal, squared-hinge form of Chapelle's RankSVM that Parikh & Grauman
extended with similarity (tie) pairs, with their C = 0.1 for both kinds of
pair. Solved by Newton's method on the active set (the objective is quadratic
once the violated ordered pairs are fixed), with a backtracking line search.
"""

from __future__ import annotations

import numpy as np

from relrank.data import Pairs

PAPER_C = 0.1


def pair_differences(features: np.ndarray, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """(x_more - x_less) for ordered pairs and (x_a - x_b) for ties."""
    ordered = pairs.target != 0.5
    sign = np.where(pairs.target[ordered] == 1.0, 1.0, -1.0)[:, None]
    diff = features[pairs.a] - features[pairs.b]
    return sign * diff[ordered], diff[~ordered]


def objective(w: np.ndarray, ordered: np.ndarray, similar: np.ndarray, c: float) -> float:
    margin = np.maximum(0.0, 1.0 - ordered @ w)
    return 0.5 * w @ w + c * (margin @ margin + np.sum((similar @ w) ** 2))


def fit_ranksvm(features: np.ndarray, pairs: Pairs, c: float = PAPER_C, max_iterations: int = 50) -> np.ndarray:
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
