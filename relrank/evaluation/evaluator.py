"""The one evaluator: a scorer and a split's pairs in, the paper's metric per attribute out.

Whatever produced the scores (a network's parameters during training, a restored checkpoint, a
RankSVM), evaluation only asks for them, as big_vision's evaluators take a predict function.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from relrank.data.pairs import Pairs
from relrank.evaluation.accuracy import accuracy_per_attribute

FEW_TEST_PAIRS = 100  # pairs (ties aside) below which an accuracy says little: train and evaluate warn


def few_pairs_warning(counted: dict[str, int], what: str = "test pairs") -> str:
    """The warning for attributes measured on fewer than FEW_TEST_PAIRS pairs ({attr: pairs, ties aside}), or ''."""
    few = {attr: n for attr, n in counted.items() if n and n < FEW_TEST_PAIRS}
    if not few:
        return ""
    shown = ", ".join(f"{attr} {n}" for attr, n in few.items())
    return (f"warning: few {what} ({shown}): one pair moves the accuracy by {100 / min(few.values()):.1f} points, "
            f"so it says little")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Pair accuracy (%) per attribute (nan where every pair is a tie), the scores it was computed from
    ([images, attributes]) and the pairs."""

    accuracy: dict[str, float]
    scores: np.ndarray
    pairs: dict[str, Pairs]

    @property
    def mean(self) -> float:
        """The mean accuracy over the attributes that have ordered pairs (nan if none has)."""
        evaluated = [a for a in self.accuracy.values() if math.isfinite(a)]
        return float(np.mean(evaluated)) if evaluated else math.nan

    def rows(self) -> list[dict]:
        """One row per attribute: attr, accuracy, num_pairs, counted_pairs (the ordered ones the accuracy counts),
        num_images."""
        return [dict(attr=attr, accuracy=value, num_pairs=len(self.pairs[attr]),
                     counted_pairs=int(np.sum(self.pairs[attr].target != 0.5)),
                     num_images=len(self.pairs[attr].images())) for attr, value in self.accuracy.items()]


def evaluate(score: Callable[[Any], np.ndarray], images: Any, pairs: dict[str, Pairs]) -> Evaluation:
    """Score `images` once with `score` (images -> [len(images), attributes], columns in the order of `pairs`)
    and measure each attribute's pairs, which index rows of `images`."""
    scores = np.asarray(score(images))
    return Evaluation(accuracy_per_attribute(scores, pairs), scores, pairs)
