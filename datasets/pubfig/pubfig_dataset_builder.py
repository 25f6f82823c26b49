"""PubFig faces with 11 relative attributes (Parikh & Grauman, ICCV 2011)."""

from __future__ import annotations

from relrank_datasets import parikh_grauman


class Builder(parikh_grauman.Builder):
    """772 face images of 8 people; 241 for training; 11 attributes."""

    IMAGES_FOLDER = "images"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download relative_attributes_v2.zip from Devi Parikh's Relative Attributes
    page (https://www.cc.gatech.edu/~parikh/relative.html, "Data: PubFig and
    OSR"), unzip it, and use its pubfig/ folder as the manual directory
    (--manual_dir=PATH/pubfig): it must hold data.mat and images/ (the 772
    face crops, e.g. images/AlexRodriguez_1.jpg).
    """
