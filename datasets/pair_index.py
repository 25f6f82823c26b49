"""The on-disk layout shared by every relrank dataset builder.

Each image is stored once, in the TFDS split 'images', with its position
`index` (builders disable shuffling, so position == index) and its `name`.
Pairs live in the dataset's metadata as a separate index:
  metadata['attributes'] = [attribute names]
  metadata['pair_sets'][split][attribute] = {'a': [...], 'b': [...], 'target': [...]}
with image indices a, b and targets 1 (a shows more), 0 (less) or 0.5 (tie).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

IMAGES_SPLIT = "images"


def image_features(image_size: int | None, num_attributes: int | None = None) -> tfds.features.FeaturesDict:
    features = {
        "image": tfds.features.Image(shape=(image_size, image_size, 3) if image_size else (None, None, 3)),
        "index": np.int32,
        "name": tfds.features.Text(),
    }
    if num_attributes:
        features["strengths"] = tfds.features.Tensor(shape=(num_attributes,), dtype=np.float32)
    return tfds.features.FeaturesDict(features)


def encode(a: np.ndarray, b: np.ndarray, target: np.ndarray) -> dict:
    return {"a": [int(x) for x in a], "b": [int(x) for x in b], "target": [float(t) for t in target]}


def sample_distinct_pairs(images: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct unordered pairs of different images, each in random order."""
    chosen: set[tuple[int, int]] = set()
    a, b = [], []
    while len(a) < n:
        i, j = rng.choice(images, 2, replace=False)
        key = (min(i, j), max(i, j))
        if key not in chosen:
            chosen.add(key)
            a.append(int(i))
            b.append(int(j))
    return np.asarray(a), np.asarray(b)
