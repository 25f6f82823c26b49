"""The frozen-feature fast paths: with the backbone frozen (--backbone_lr=0) and no augmentation but flips,
each image's feature is computed once (and once for its mirror image, with --flip), cached on disk, and only
the ranking layer trains, on the cached features (a flip picks the mirror image's). With --train_blocks=N the
same holds one step earlier: the activations entering the backbone's last N blocks are cached, and those
blocks train with the ranking layer.

A cache file holds the features of one dataset's images for one backbone: its name says the dataset, model,
size and weights file; inside, its key records what the features depend on (the weights file's SHA-256,
the network, the preprocessing, the size, the dtype). A file whose key differs from the run's is stale and
refused in one line; a later run (another seed, attribute or recipe) reuses it and adds missing images.
Activations are cached as features are, in files named and keyed by the frozen blocks and views as well.
Dropout (--dropout) acts on the cached feature, as VGG's after fc7 does (VGG's after fc6 cannot).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import re
import sys
import time

import numpy as np

from relrank.config import Config
from relrank.errors import UserError
from relrank.model.network import apply_in_batches, cached_views, jit_apply, model_graph
from relrank.model.registry import trunk_blocks
from relrank.model.downloads import sha256
from relrank.model.weights import HF_WEIGHTS, file_version
from relrank.parallel import distributed, sharding
from relrank.run.workdir import write_atomic
from relrank.train import augment


def uses_cached_features(config: Config) -> bool:
    """Whether a run trains its ranking layer alone on cached features."""
    return config.method == "deep" and config.backbone_lr == 0 and augment.only_flips(config)


def uses_cached_activations(config: Config) -> bool:
    """Whether a run trains its last blocks and ranking layer on cached activations (--train_blocks)."""
    return config.method == "deep" and config.train_blocks > 0


def cache_dir(config: Config) -> str:
    return config.feature_cache or os.environ.get("RELRANK_CACHE") or os.path.expanduser("~/.cache/relrank/features")


@functools.lru_cache(maxsize=4)
def _sha256(path: str, version) -> str:
    return sha256(path)


def weights_digest(config: Config) -> str:
    """The SHA-256 of the weights file (an HF folder's weights file), or what the random init depends on."""
    if not config.weights:
        return f"random init, seed {config.seed}"
    path = config.weights
    if os.path.isdir(path):
        path = next(os.path.join(path, n) for n in HF_WEIGHTS if os.path.isfile(os.path.join(path, n)))
    return _sha256(path, file_version(path))


def cache_key(config: Config) -> dict:
    """What the features depend on."""
    spec = {k: v for k, v in dataclasses.asdict(config.spec).items() if k not in ("dropout", "zero_head")}
    key = dict(weights=weights_digest(config), model=config.model, spec=spec, image_size=config.image_size,
               preprocessing=dataclasses.asdict(config.preprocessing), compute_dtype=config.compute_dtype)
    if uses_cached_activations(config):
        key.update(trunk_blocks=trunk_blocks(config))
    if config.flip:
        key.update(views=2)
    return json.loads(json.dumps(key))  # as it reads back from the file


def cache_path(config: Config) -> str:
    weights = os.path.basename(os.path.normpath(config.weights)) if config.weights else f"random-seed{config.seed}"
    name = f"{config.dataset}-{config.data_identity}-{config.model}-{config.image_size}px-{weights}"
    if uses_cached_activations(config):
        name += f"-after{trunk_blocks(config)}blocks"
    if config.flip:
        name += "-flips"
    return os.path.join(cache_dir(config), re.sub(r"[^\w.+-]", "_", name) + ".npz")


def read_cache(path: str, key: dict) -> tuple[np.ndarray, np.ndarray]:
    """(ids, features) of a cache file, or empty ones if there is none; a stale or damaged one is refused."""
    if not os.path.exists(path):
        return np.zeros((0,), np.int64), None
    try:
        with np.load(path, allow_pickle=False) as saved:
            saved_key, ids, table = json.loads(str(saved["key"])), saved["ids"], saved["features"]
    except Exception as error:  # BadZipFile, KeyError, ValueError, ... for a damaged file
        raise UserError(f"feature cache {path} is unreadable ({type(error).__name__}); delete it to compute the "
                        f"features again") from None
    for name in key:
        if saved_key.get(name) != key[name]:
            then, now = saved_key.get(name), key[name]
            if name == "weights":
                then, now = f"sha256 {str(then)[:12]}", f"sha256 {str(now)[:12]}"
            raise UserError(f"feature cache {path} is stale: its {name} was {then}, the run's is {now} (the weights "
                            f"file or the preprocessing changed); delete it to compute the features again")
    return ids, table


def write_cache(path: str, key: dict, ids: np.ndarray, table: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, key=np.asarray(json.dumps(key, sort_keys=True)), ids=ids, features=table)
    write_atomic(path, buffer.getvalue())


def attach_features(config: Config, params: dict, splits: list, mesh) -> dict:
    """Replace each split's images with its images' cached views (relrank/model/network.py `cached_views`), from
    the cache where it has them, computed (and cached) otherwise; the training split (the first) keeps both
    views with --flip, the others the image's alone. Returns what was done, for the run's summary."""
    started = time.perf_counter()
    what = "activations" if uses_cached_activations(config) else "features"
    path, key = cache_path(config), cache_key(config)
    ids, table = read_cache(path, key)
    wanted = np.unique(np.concatenate([split.ids for split in splits]))
    missing = np.setdiff1d(wanted, ids)
    if len(missing):
        extract = jit_apply(model_graph(config), mesh, cached_views)
        images = _Images(splits, missing)
        new = apply_in_batches(lambda x: extract(params, sharding.put_images(x, mesh)), images,
                               config.eval_batch_images, desc=f"computing {what}", multiple=mesh.size)
        ids = np.concatenate([ids, missing])
        table = new if table is None else np.concatenate([table, new])
        if distributed.is_main():
            write_cache(path, key, ids, table)
    row_of = {int(i): r for r, i in enumerate(ids)}
    for n, split in enumerate(splits):
        split.images = table[[row_of[int(i)] for i in split.ids]]
        if config.flip and n:  # evaluation scores the images as they are
            split.images = split.images[:, 0]
    seconds = time.perf_counter() - started
    if distributed.is_main():
        print(f"{what}: {len(wanted) - len(missing)} cached, {len(missing)} computed in {seconds:.1f} s ({path})",
              file=sys.stderr)
    return dict(feature_cache=path, features_cached=int(len(wanted) - len(missing)),
                features_computed=int(len(missing)), feature_seconds=round(seconds, 2))


class _Images:
    """The images of dataset ids `missing`, read from whichever split holds each (a table or stored images)."""

    def __init__(self, splits: list, missing: np.ndarray):
        self.where = {}
        for split in splits:
            for row, i in enumerate(split.ids):
                self.where.setdefault(int(i), (split, row))
        self.missing = missing

    def __len__(self) -> int:
        return len(self.missing)

    def __getitem__(self, rows: slice) -> np.ndarray:
        found = [self.where[int(i)] for i in self.missing[rows]]
        return np.concatenate([split.images[row : row + 1] for split, row in found])
