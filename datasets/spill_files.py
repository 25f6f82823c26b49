"""Let TFDS prepare datasets larger than its 1 GB in-memory buffer without TensorFlow installed.

While it writes a split, TFDS keeps the encoded examples in memory up to 1 GB, then spills
them to temporary bucket files that it opens with `tf.io.gfile` (tensorflow_datasets/core/
shuffle.py). relrank installs no TensorFlow, so without this a dataset of more than 1 GB of
encoded images (Place Pulse 2.0, `synthetic_large`) stops preparation with "No module named
'tensorflow'". `use_local_files` gives that module the three file operations it needs, on
the local file system; it changes nothing when TensorFlow is installed.
"""

from __future__ import annotations

import importlib.util
import os
import types


class _ResourceExhaustedError(OSError):
    """Never raised: stands in for tf.errors.ResourceExhaustedError in TFDS's `except` clause."""

    message = ""


def _local_gfile() -> types.SimpleNamespace:
    gfile = types.SimpleNamespace(GFile=open, exists=os.path.exists, remove=os.remove)
    return types.SimpleNamespace(io=types.SimpleNamespace(gfile=gfile),
                                 errors=types.SimpleNamespace(ResourceExhaustedError=_ResourceExhaustedError))


def use_local_files() -> None:
    """Point TFDS's shuffle buckets at local files when TensorFlow is absent."""
    if importlib.util.find_spec("tensorflow") is not None:
        return
    from tensorflow_datasets.core import shuffle

    if not isinstance(shuffle.tf, types.SimpleNamespace):
        shuffle.tf = _local_gfile()
