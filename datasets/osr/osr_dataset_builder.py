"""Outdoor Scene Recognition with 6 relative attributes (Parikh & Grauman, ICCV 2011)."""

from __future__ import annotations

from relrank_datasets import parikh_grauman

IMAGES_FOLDER = "spatial_envelope_256x256_static_8outdoorcategories"


class Builder(parikh_grauman.Builder):
    """2,688 outdoor scenes of 8 categories; 6 attributes."""

    IMAGES_FOLDER = IMAGES_FOLDER
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
