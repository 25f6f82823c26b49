"""The datasets `--dataset` names: which builder prepares each, its protocol and its defaults."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A `--dataset` name: the TFDS builder that prepares it, its protocol and its defaults.

    `epochs` is the paper's number of epochs for the dataset (recipes may set their own);
    `recipe` is the recipe used without --recipe. `train` and `test` name the builder's pair
    sets (they may contain {split}, UT-Zap50K-1's split number); UT-Zap50K-1 and -2 are two
    views of one builder. `builder_config` names a config of the builder (its size, say).
    """

    builder: str
    epochs: int
    recipe: str = "paper"
    builder_config: str = ""
    train: str = "train"
    test: str = "test"


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec("synthetic", 4, recipe="demo"),
    "synthetic_large": DatasetSpec("synthetic", 1, recipe="demo", builder_config="large"),
    "osr": DatasetSpec("osr", 2),
    "pubfig": DatasetSpec("pubfig", 2),
    "lfw10": DatasetSpec("lfw10", 40),
    "zappos1": DatasetSpec("zappos", 25, train="train_{split}", test="test_{split}"),
    "zappos2": DatasetSpec("zappos", 25, train="train_all", test="test_hard"),
    "pairs_csv": DatasetSpec("pairs_csv", 10),
    "placepulse": DatasetSpec("placepulse", 2),  # no paper protocol: 2 epochs over ~1M votes, as for OSR/PubFig
}
