"""The OSR and PubFig releases of Parikh & Grauman's "Relative Attributes" (ICCV 2011).

`data.mat` holds per image its name (`im_names`), its class (`class_labels`,
1-based) and whether it is a training image (`used_for_training`); per
attribute and class a strength (`relative_ordering`, equal values = similar).
Each image takes its strengths from its class. The pairs are all combinations
of training images, and all combinations of test images, with target 1, 0 or
0.5 by comparing the two strengths.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from relrank_datasets import image_files, pair_index, sources


class Builder(image_files.ImageFilesBuilder, skip_registration=True):
    """Shared by the OSR and PubFig builders, which name their instructions and IMAGES_FOLDER."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    IMAGES_FOLDER = ""

    def _info(self) -> tfds.core.DatasetInfo:
        # Images with the release's own features (`feat`: GIST, plus colour for PubFig).
        feat = tfds.features.Tensor(shape=(None,), dtype=np.float32)
        return self.dataset_info_from_configs(
            features=pair_index.image_features(None, extra={"feat": feat}),
            metadata=pair_index.PairIndexMetadata(),
            disable_shuffling=True,
            homepage="https://www.cc.gatech.edu/~parikh/relative.html",
        )

    def _split_generators(self, dl_manager):
        return split_generators(self, dl_manager, self.IMAGES_FOLDER)


def split_generators(builder, dl_manager, images_folder: str):
    root = image_files.manual_dir(builder, dl_manager)
    instructions = builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    data = sources.loadmat(os.path.join(root, "data.mat"), instructions, variables=(
        "im_names", "class_labels", "used_for_training", "relative_ordering", "attribute_names", "class_names"))
    images_dir = sources.require(os.path.join(root, images_folder), instructions)
    names = sources.strings(data["im_names"])
    classes = np.asarray(data["class_labels"]).ravel().astype(int) - 1
    training = np.asarray(data["used_for_training"]).ravel() == 1
    ordering = np.asarray(data["relative_ordering"], np.float64)  # attributes x classes
    attributes = sources.strings(data["attribute_names"])
    feat = np.asarray(data["feat"], np.float32) if "feat" in data else np.zeros((len(names), 0), np.float32)

    pair_sets = {}
    for split, members in (("train", np.flatnonzero(training)), ("test", np.flatnonzero(~training))):
        pair_sets[split] = {
            attr: pair_index.encode_all_pairs(members, ordering[k, classes[members]])
            for k, attr in enumerate(attributes)
        }
    builder.info.metadata.update(
        attributes=attributes,
        pair_sets=pair_sets,
        class_names=sources.strings(data["class_names"]),
        class_labels=classes.tolist(),
        relative_ordering=ordering.tolist(),
    )
    paths = [os.path.join(images_dir, name) for name in names]
    for path in paths:
        sources.require(path, instructions)
    return {pair_index.IMAGES_SPLIT: builder._generate_examples(paths, names, extra={"feat": list(feat)})}
