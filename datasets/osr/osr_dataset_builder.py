"""Outdoor Scene Recognition with 6 relative attributes (Parikh & Grauman, ICCV 2011)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from relrank_datasets import pair_index, parikh_grauman

IMAGES_FOLDER = "spatial_envelope_256x256_static_8outdoorcategories"


class Builder(pair_index.ImageFilesBuilder):
    """2,688 outdoor scenes of 8 categories; 6 attributes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    1. Download relative_attributes_v2.zip from Devi Parikh's Relative
       Attributes page (https://www.cc.gatech.edu/~parikh/relative.html,
       "Data: PubFig and OSR"); from its osr/ folder take data.mat.
    2. Download Oliva & Torralba's spatial envelope images
       (spatial_envelope_256x256_static_8outdoorcategories.zip, from
       http://people.csail.mit.edu/torralba/code/spatialenvelope/) and unzip it.
    The manual directory (--manual_dir) must hold data.mat and the folder
    {IMAGES_FOLDER}/ with the 2,688 images (e.g. coast_arnat59.jpg).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=parikh_grauman.features(),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
            homepage="https://www.cc.gatech.edu/~parikh/relative.html",
        )

    def _split_generators(self, dl_manager):
        return parikh_grauman.split_generators(self, dl_manager, images_folder=IMAGES_FOLDER)
