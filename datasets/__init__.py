"""TFDS dataset builders for relrank (installed as `relrank_datasets`).

One folder per builder (TFDS layout). A relrank dataset name is a view of a
builder: which of its pair sets train and test (UT-Zap50K-1 and -2 share the
`zappos` builder, so its images are stored once).
"""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class DatasetView:
    builder: str
    train: str = "train"  # may contain {split}
    test: str = "test"
    needs_manual_dir: bool = True


DATASETS = {
    "synthetic": DatasetView("synthetic", needs_manual_dir=False),
    "osr": DatasetView("osr"),
    "pubfig": DatasetView("pubfig"),
    "lfw10": DatasetView("lfw10"),
    "zappos1": DatasetView("zappos", train="train_{split}", test="test_{split}"),
    "zappos2": DatasetView("zappos", train="train_all", test="test_hard"),
    "pairs_csv": DatasetView("pairs_csv"),
}


def builder_class(builder: str):
    return importlib.import_module(f"relrank_datasets.{builder}.{builder}_dataset_builder").Builder
