"""UT-Zappos50K relative attributes (Yu & Grauman, CVPR 2014): UT-Zap50K-1 and UT-Zap50K-2.

Only the images that the comparison labels reference are stored. Pair sets:
  train_1 .. train_10, test_1 .. test_10  UT-Zap50K-1, the release's 10 splits of `mturkOrder`
  train_all, test_hard                    UT-Zap50K-2: all of `mturkOrder` for training, `mturkHard` for testing
  train_equal                             `mturkEqual`, the tie pairs (target 0.5), an opt-in for training
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from relrank_datasets import image_files, pair_index, sources

ATTRIBUTES = ("open", "pointy", "sporty", "comfort")
NUM_SPLITS = 10


def label_rows(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image 1, image 2) as 0-based image-path indices and the target of each row of a label matrix.

    Columns: image 1, image 2 (1-based), attribute id, label (1 = first more,
    2 = first less, 3 = equal), confidence, agreement.
    """
    matrix = np.asarray(matrix, np.float64)
    return (matrix[:, 0].astype(np.int64) - 1, matrix[:, 1].astype(np.int64) - 1,
            pair_index.target_from_labels(matrix[:, 3], 1, 2, 3))


def image_file(images_root: str, relative: str) -> str | None:
    """The file of an `imagepath` entry: folders may have lost a trailing '.', "Levi's " is "Levi's&#174; "."""
    parts = relative.replace("\\", "/").split("/")
    variants = [parts, [p.rstrip(".") for p in parts[:-1]] + parts[-1:]]
    for variant in list(variants):
        variants.append([p.replace("Levi's ", "Levi's&#174; ") for p in variant[:-1]] + variant[-1:])
    for variant in variants:
        path = os.path.join(images_root, *variant)
        if os.path.exists(path):
            return path
    return None


class Builder(image_files.ImageFilesBuilder):
    """UT-Zap50K shoe images with open/pointy/sporty/comfort comparisons."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download ut-zap50k-data.zip and ut-zap50k-images.zip from the UT-Zappos50K
    page (https://vision.cs.utexas.edu/projects/finegrained/utzap50k/) and
    unzip both into the manual directory (--manual_dir), which must then hold
    ut-zap50k-data/ (image-path.mat, zappos-labels.mat, zappos-labels-fg.mat,
    train-test-splits.mat) and ut-zap50k-images/ (Shoes/, Boots/, Sandals/,
    Slippers/).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=pair_index.image_features(None),
            metadata=pair_index.PairIndexMetadata(),
            disable_shuffling=True,
            homepage="https://vision.cs.utexas.edu/projects/finegrained/utzap50k/",
        )

    def _split_generators(self, dl_manager):
        root = image_files.manual_dir(self, dl_manager)
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        data_dir = os.path.join(root, "ut-zap50k-data")
        def load(name: str, *variables: str) -> dict:
            return sources.loadmat(os.path.join(data_dir, name), instructions, variables)

        image_paths = sources.strings(load("image-path.mat", "imagepath")["imagepath"])
        labels = load("zappos-labels.mat", "mturkOrder", "mturkEqual")
        hard = load("zappos-labels-fg.mat", "mturkHard")["mturkHard"].ravel()
        splits = load("train-test-splits.mat", "trainIndexAll", "testIndexAll")
        order, equal = labels["mturkOrder"].ravel(), labels["mturkEqual"].ravel()

        rows_of = {}  # (set name, attribute) -> (a, b, target) in image-path indices
        for k, attr in enumerate(ATTRIBUTES):
            a, b, target = label_rows(order[k])
            rows_of["train_all", attr] = (a, b, target)
            rows_of["test_hard", attr] = label_rows(hard[k])
            rows_of["train_equal", attr] = label_rows(equal[k])
            for s in range(NUM_SPLITS):
                for name, key in (("train", "trainIndexAll"), ("test", "testIndexAll")):
                    rows = np.asarray(splits[key].ravel()[k].ravel()[s]).ravel().astype(np.int64) - 1
                    rows_of[f"{name}_{s + 1}", attr] = (a[rows], b[rows], target[rows])

        used = np.unique(np.concatenate([np.concatenate([a, b]) for a, b, _ in rows_of.values()]))
        position = np.full(len(image_paths), -1, np.int64)
        position[used] = np.arange(len(used))
        pair_sets: dict = {}
        for (name, attr), (a, b, target) in rows_of.items():
            pair_sets.setdefault(name, {})[attr] = pair_index.encode(position[a], position[b], target)
        self.info.metadata.update(attributes=list(ATTRIBUTES), pair_sets=pair_sets)

        images_root = sources.require(os.path.join(root, "ut-zap50k-images"), instructions)
        names = [image_paths[i] for i in used]
        files = [image_file(images_root, name) for name in names]
        missing = [n for n, f in zip(names, files) if f is None]
        if missing:
            raise sources.SourceFilesError(
                f"{len(missing)} of the {len(names)} labelled images are missing under {images_root}, "
                f"e.g. {missing[0]}\n{instructions.strip()}")
        return {pair_index.IMAGES_SPLIT: self._generate_examples(files, names)}
