"""The on-disk layout shared by every relrank dataset builder.

Each image is stored once, in the TFDS split 'images', with its position
`index` (builders disable shuffling, so position == index) and its `name`.
Pairs live in the dataset's metadata as a separate index:
  metadata['attributes'] = [attribute names]
  metadata['pair_sets'][split][attribute] = {'a': [...], 'b': [...], 'target': [...]}
with image indices a, b and targets 1 (a shows more), 0 (less) or 0.5 (tie).
`PairIndexMetadata` keeps those arrays in pair_index.npz beside metadata.json (three
compact arrays per pair set, however many pairs: no Python object per pair).
"""

from __future__ import annotations


import numpy as np
import tensorflow_datasets as tfds
from etils import epath

IMAGES_SPLIT = "images"


def image_features(image_size: int | None, num_attributes: int | None = None, extra: dict | None = None):
    """Features of one stored image; images of any size keep their original encoded bytes."""
    features = {
        "image": tfds.features.Image(shape=(image_size, image_size, 3) if image_size else (None, None, 3)),
        "index": np.int32,
        "name": tfds.features.Text(),
    }
    if num_attributes:
        features["strengths"] = tfds.features.Tensor(shape=(num_attributes,), dtype=np.float32)
    features.update(extra or {})
    return tfds.features.FeaturesDict(features)


def encode(a: np.ndarray, b: np.ndarray, target: np.ndarray) -> dict:
    """Explicit pairs: image a[i] vs b[i] with target[i] (stored by `PairIndexMetadata` as arrays)."""
    return {"a": np.asarray(a, np.int64), "b": np.asarray(b, np.int64), "target": np.asarray(target, np.float32)}


PAIR_ARRAYS_FILE = "pair_index.npz"


class PairIndexMetadata(tfds.core.Metadata, dict):
    """The builders' metadata: JSON, except the arrays of explicit pairs, which go to pair_index.npz.

    Metadata written as JSON lists by earlier versions loads unchanged. (Not a MetadataDict:
    TFDS would replace one with its plain lazy JSON reader.)
    """

    def save_metadata(self, data_dir):
        arrays, described = {}, dict(self)
        described["pair_sets"] = {
            split: {attr: self._store(pairs, arrays) for attr, pairs in by_attr.items()}
            for split, by_attr in self.get("pair_sets", {}).items()
        }
        with epath.Path(data_dir, PAIR_ARRAYS_FILE).open("wb") as f:
            np.savez(f, **arrays)
        tfds.core.MetadataDict(described).save_metadata(data_dir)

    @staticmethod
    def _store(pairs: dict, arrays: dict) -> dict:
        if "a" not in pairs:
            return pairs  # all pairs of a group, annotated by strengths: small, kept in the JSON
        key = f"set{len(arrays) // 3}"
        for field in ("a", "b", "target"):
            arrays[f"{key}_{field}"] = np.asarray(pairs[field])
        return {"arrays": key}

    def load_metadata(self, data_dir):
        described = tfds.core.MetadataDict()
        described.load_metadata(data_dir)
        self.clear()
        self.update(described)
        path = epath.Path(data_dir, PAIR_ARRAYS_FILE)
        if not path.exists():
            return
        with path.open("rb") as f, np.load(f, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        for by_attr in self.get("pair_sets", {}).values():
            for attr, pairs in by_attr.items():
                if "arrays" in pairs:
                    by_attr[attr] = {field: arrays[f"{pairs['arrays']}_{field}"] for field in ("a", "b", "target")}


def encode_all_pairs(images: np.ndarray, strengths: np.ndarray) -> dict:
    """All combinations of `images`, annotated by comparing `strengths` (expanded when loaded)."""
    return {"all_pairs_of": [int(x) for x in images], "strengths": [float(s) for s in strengths]}


def target_from_labels(labels: np.ndarray, more, less, equal) -> np.ndarray:
    """Map a dataset's three label codes to targets 1, 0 and 0.5 (anything else is an error)."""
    labels = np.asarray(labels)
    target = np.select([labels == more, labels == less, labels == equal], [1.0, 0.0, 0.5], np.nan)
    if np.isnan(target).any():
        raise ValueError(f"unexpected labels {sorted(set(labels[np.isnan(target)].tolist()))[:5]}")
    return target


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
