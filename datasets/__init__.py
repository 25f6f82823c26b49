"""TFDS dataset builders for relrank (installed as `relrank_datasets`).

One folder per builder (TFDS layout). Which `--dataset` names use which
builder, and with which pair sets, is relrank's registry (`relrank.data.registry.DATASETS`):
UT-Zap50K-1 and -2 are two views of the `zappos` builder, so its images are stored once.
"""

from __future__ import annotations

import importlib


def builder_class(builder: str):
    from relrank_datasets.spill_files import use_local_files

    use_local_files()
    return importlib.import_module(f"relrank_datasets.{builder}.{builder}_dataset_builder").Builder
