"""TFDS dataset builders for relrank (installed as `relrank_datasets`)."""

from __future__ import annotations

import importlib

# relrank dataset name -> module of its builder (imported on demand).
BUILDER_MODULES = {
    "synthetic": "relrank_datasets.synthetic.synthetic_dataset_builder",
}


def builder_class(name: str):
    return importlib.import_module(BUILDER_MODULES[name]).Builder
