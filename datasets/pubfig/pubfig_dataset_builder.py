"""PubFig faces with 11 relative attributes (Parikh & Grauman, ICCV 2011)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from relrank_datasets import pair_index, parikh_grauman


class Builder(pair_index.ImageFilesBuilder):
    """772 face images of 8 people; 241 for training; 11 attributes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download relative_attributes_v2.zip from Devi Parikh's Relative Attributes
    page (https://www.cc.gatech.edu/~parikh/relative.html, "Data: PubFig and
    OSR"), unzip it, and use its pubfig/ folder as the manual directory
    (--manual_dir=PATH/pubfig): it must hold data.mat and images/ (the 772
    face crops, e.g. images/AlexRodriguez_1.jpg).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=parikh_grauman.features(),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
            homepage="https://www.cc.gatech.edu/~parikh/relative.html",
        )

    def _split_generators(self, dl_manager):
        return parikh_grauman.split_generators(self, dl_manager, images_folder="images")
