"""LFW-10: face pairs annotated for 10 relative attributes (Sandeep, Verma & Jawahar, ICVGIP 2014)."""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from relrank_datasets import image_files, pair_index, sources

ATTRIBUTES = (
    "baldhead", "darkhair", "eyesopen", "goodlooking", "masculinelooking",
    "mouthopen", "smile", "v_teeth", "vforehead", "young",
)


def read_pairs(path: str, instructions: str) -> tuple[list[str], list[str], np.ndarray]:
    """Image names and targets of one annotation file.

    `images_compare` (n x 3 cell): columns 2 and 3 name the two images ('123.jpg');
    `attribute_strengths` (n x 4): columns 2..4 count votes for first more / first
    less / equal; the target follows the first maximum.
    """
    data = sources.loadmat(path, instructions, variables=("images_compare", "attribute_strengths"))
    compare = np.asarray(data["images_compare"], dtype=object)
    votes = np.asarray(data["attribute_strengths"], np.float64)[:, 1:4]
    first = sources.strings(compare[:, 1])
    second = sources.strings(compare[:, 2])
    target = np.array([1.0, 0.0, 0.5])[np.argmax(votes, axis=1)]
    return first, second, target


class Builder(image_files.ImageFilesBuilder):
    """LFW-10: 2,000 face images, 500 training and 500 test pairs per attribute."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download LFW10.zip from the LFW-10 page of IIIT Hyderabad
    (http://cvit.iiit.ac.in/projects/relativeParts/, "LFW-10 dataset") and
    unzip it into the manual directory (--manual_dir), which must then hold
    LFW10/images/1.jpg .. 2000.jpg and LFW10/annotations/<attribute>train.mat
    and <attribute>test.mat for each of: baldhead, darkhair, eyesopen,
    goodlooking, masculinelooking, mouthopen, smile, v_teeth, vforehead, young.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=pair_index.image_features(None),
            metadata=pair_index.PairIndexMetadata(),
            disable_shuffling=True,
            homepage="http://cvit.iiit.ac.in/projects/relativeParts/",
        )

    def _split_generators(self, dl_manager):
        root = os.path.join(image_files.manual_dir(self, dl_manager), "LFW10")
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        annotations = {
            (split, attr): read_pairs(os.path.join(root, "annotations", f"{attr}{split}.mat"), instructions)
            for split in ("train", "test")
            for attr in ATTRIBUTES
        }
        names = sorted({n for first, second, _ in annotations.values() for n in first + second},
                       key=lambda n: int(os.path.splitext(n)[0]))
        index = {name: i for i, name in enumerate(names)}
        pair_sets = {"train": {}, "test": {}}
        for (split, attr), (first, second, target) in annotations.items():
            pair_sets[split][attr] = pair_index.encode(
                np.array([index[n] for n in first]), np.array([index[n] for n in second]), target)
        self.info.metadata.update(attributes=list(ATTRIBUTES), pair_sets=pair_sets)
        paths = [sources.require(os.path.join(root, "images", n), instructions) for n in names]
        return {pair_index.IMAGES_SPLIT: self._generate_examples(paths, names)}
