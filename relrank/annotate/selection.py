"""Which pair to ask next: at random, or the pair the current ranker is least sure of.

Active selection draws candidate pairs at random, scores each by how close the ranker's P(a > b) is to 0.5
(the gap |r_a - r_b| in units of the scores' spread) plus a penalty for images already asked often, and
takes the best; a fixed share of picks stays random, which keeps the answers an unbiased sample too.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CANDIDATES = 2048  # candidate pairs scored per pick
REPEAT_PENALTY = 0.3  # per answer an image has had, relative to the mean: spreads questions over the images
RANDOM_SHARE = 0.2  # of active picks that are random
WARMUP = 30  # answers per attribute before active selection starts (the ranker needs a few to be worth asking)


@dataclasses.dataclass
class Selector:
    """Picks pairs of image indices in [0, num_images); `taken` pairs (frozensets) are never picked."""

    num_images: int
    strategy: str = "active"  # or "random"
    seed: int = 0
    random_share: float = RANDOM_SHARE
    warmup: int = WARMUP

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)
        self.asked = np.zeros(self.num_images, np.int64)  # how often each image was in a picked pair

    def pick(self, scores: np.ndarray | None, taken, answered: int) -> tuple[int, int] | None:
        """The next pair (i, j), or None when every pair is taken. `scores`: the ranker's r per image (None
        before its first fit); `answered`: answers so far for this attribute (the warm-up counts them)."""
        active = (self.strategy == "active" and scores is not None and answered >= self.warmup
                  and self.rng.uniform() >= self.random_share)
        a, b = self._candidates(taken)
        if len(a) == 0:
            return None
        if active:
            spread = float(np.std(scores)) or 1.0
            gap = np.abs(scores[a] - scores[b]) / spread
            repeats = (self.asked[a] + self.asked[b]) / (2.0 * max(self.asked.mean(), 1.0))
            best = int(np.argmin(gap + REPEAT_PENALTY * repeats))
        else:
            best = 0
        i, j = int(a[best]), int(b[best])
        self.asked[[i, j]] += 1
        return i, j

    def _candidates(self, taken) -> tuple[np.ndarray, np.ndarray]:
        """Up to CANDIDATES random pairs of distinct images, none taken; exhaustive when few pairs are left."""
        n = self.num_images
        a = self.rng.integers(0, n, CANDIDATES)
        b = (a + self.rng.integers(1, n, CANDIDATES)) % n
        free = np.array([frozenset((int(i), int(j))) not in taken for i, j in zip(a, b)], bool)
        if free.any():
            return a[free], b[free]
        i, j = np.triu_indices(n, 1)  # nearly every pair is taken: look at all of them
        free = np.array([frozenset((int(x), int(y))) not in taken for x, y in zip(i, j)], bool)
        order = self.rng.permutation(int(free.sum()))
        return i[free][order], j[free][order]
