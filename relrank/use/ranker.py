"""A trained ranker loaded from a workdir: `relrank.load(workdir).score(images)`.

A run trained on several attributes at once has one output per attribute:
`score(images, attr='Male')` picks one, `score_all(images)` gives them all.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from tqdm.auto import tqdm

from relrank.config import Config
from relrank.data.datasets import ImageRecords, StoredImages
from relrank.data.images import ImageDecodeError, to_uint8, to_uint8_rgb
from relrank.errors import UserError
from relrank.model.registry import feature_width
from relrank.model.losses import pair_probability
from relrank.model.network import apply_in_batches, features, jit_apply, model_graph, param_shapes, scores
from relrank.model.weights import starting_params
from relrank.parallel import sharding
from relrank.run.checkpoints import Checkpoints, UnreadableCheckpoint, abstract, open_workdir
from relrank.run.backbone import has_frozen_backbone, load_backbone

READ_ATTEMPTS = 5  # reads of a workdir whose steps are deleted while they are read (a run rotating them)
FILES_PER_CHUNK = 256  # images decoded at a time by `score_files`
DATASET_CHUNK = 4096  # dataset images decoded at a time by `score_dataset_images`


class Ranker:
    """Scores images by the attribute(s) it was trained on (higher = more).

    `score_fn(params, images)` is the pure function under it: uint8 or float pixels [N, S, S, 3] (0-255) ->
    scores [N, attributes]; `jax.jit`, `jax.grad`, `jax.vmap` and `jax.export` apply to it as to any JAX function.
    """

    def __init__(self, config: Config, params, step: int, batch_images: int | None = None, progress: bool = True):
        self.config = config
        self.progress = progress  # progress bars over many images (off for library calls that want silence)
        self.step = step
        self.mesh = sharding.make_mesh()
        self.network = model_graph(config)
        self.params = sharding.put_replicated(params, self.mesh)
        self._apply = {output: jit_apply(self.network, self.mesh, output) for output in (scores, features)}
        batch = batch_images or config.eval_batch_images
        if batch < 1:
            raise UserError(f"batch_size must be at least 1, got {batch}")
        self.batch_images = -(-batch // self.mesh.size) * self.mesh.size

    @classmethod
    def untrained(cls, config: Config) -> "Ranker":
        """The network before training, for its features: the starting weights (the --weights file, or the
        seed's random init) and an untrained ranking layer."""
        return cls(config, starting_params(config), step=0)

    @property
    def score_fn(self):
        """The pure scoring function (params, pixels [N, S, S, 3]) -> scores [N, attributes]: no batching, no
        resizing, differentiable in the pixels; use it with `self.params`."""
        return functools.partial(scores, self.network)

    def prepare(self, images) -> np.ndarray:
        """uint8 [N, S, S, 3] at the model's size from what people pass: one image or a list of them, each a path,
        encoded bytes, a PIL image or an array (numpy or JAX; uint8 0-255 or float, [H, W], [H, W, C]), or
        a batch array [N, H, W, C]. Float pixels in [0, 1] are scaled to 0-255; other floats are taken as 0-255."""
        size = self.config.image_size
        batch = _as_image_list(images)
        if isinstance(batch, np.ndarray) and batch.dtype.kind == "f":
            batch = to_uint8(batch)  # one scale for the whole batch
        if isinstance(batch, np.ndarray) and batch.dtype == np.uint8 and batch.shape[1:] == (size, size, 3):
            return batch
        if not len(batch):
            return np.zeros((0, size, size, 3), np.uint8)
        return np.stack([to_uint8_rgb(x, size) for x in batch])

    def _in_batches(self, output, images, desc: str) -> np.ndarray:
        apply, pixels = self._apply[output], self.prepare(images)
        if not len(pixels):
            width = len(self.attrs) if output is scores else feature_width(self.config)
            return np.zeros((0, width), np.float32)
        return apply_in_batches(lambda x: apply(self.params, x), pixels, self.batch_images,
                                desc if self.progress else None,
                                multiple=self.mesh.size)

    @property
    def attrs(self) -> tuple[str, ...]:
        """The attributes it ranks, in the order of `score_all`'s columns."""
        return self.config.attrs

    def output(self, attr: str | None) -> int:
        """The column of `attr` (None: the only attribute of a single-attribute ranker)."""
        if attr is None:
            if len(self.attrs) > 1:
                raise UserError(f"this ranker scores {len(self.attrs)} attributes ({', '.join(self.attrs)}); "
                                f"choose one (attr=... / --attr=...)")
            return 0
        if attr not in self.attrs:
            raise UserError(f"this ranker was not trained on attribute {attr!r}; it ranks: {', '.join(self.attrs)}")
        return self.attrs.index(attr)

    def score_all(self, images) -> np.ndarray:
        """Scores of every attribute, float32 [N, attributes]; batched, preprocessed as in training."""
        return self._in_batches(scores, images, "scoring")

    def score(self, images, attr: str | None = None) -> np.ndarray:
        """One score per image by `attr` (default: the ranker's only attribute), float32 [N]."""
        column = self.output(attr)
        return self.score_all(images)[:, column]

    def features(self, images) -> np.ndarray:
        """The backbone's features [N, D] (fc7 for VGG; float32) of the images, as the ranking layer sees them."""
        return self._in_batches(features, images, "features")

    def compare(self, a, b, attr: str | None = None) -> np.ndarray:
        """P(a shows more of `attr` than b) for matching lists of images."""
        return np.asarray(pair_probability(self.score(a, attr), self.score(b, attr)))

    def score_files(self, paths: list[str]) -> tuple[list[str], np.ndarray, list[str]]:
        """(readable paths, their scores [N, attributes], one 'cannot read image ...' line per unreadable file),
        decoded a chunk at a time."""
        kept, chunks, unreadable = [], [], []
        for start in range(0, len(paths), FILES_PER_CHUNK):
            images = []
            for path in paths[start : start + FILES_PER_CHUNK]:
                try:
                    images.append(to_uint8_rgb(path, self.config.image_size))
                    kept.append(path)
                except ImageDecodeError as error:
                    unreadable.append(str(error))
            if images:
                chunks.append(self.score_all(np.stack(images)))
        empty = np.zeros((0, len(self.attrs)), np.float32)
        return kept, (np.concatenate(chunks) if chunks else empty), unreadable

    def score_dataset_images(self, data, ids: np.ndarray) -> np.ndarray:
        """Scores [len(ids), attributes] of the dataset's images `ids` (how runs are evaluated), read and
        scored a chunk at a time, so any number of images fits in memory."""
        stored = StoredImages(ImageRecords(data.source), np.asarray(ids), self.config.image_size, data.name)
        starts = range(0, len(stored), DATASET_CHUNK)
        chunks = [self.score_all(stored[k : k + DATASET_CHUNK])
                  for k in tqdm(starts, desc="scoring images", unit="chunk", leave=False,
                                disable=len(starts) < 2 or not self.progress)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.attrs)), np.float32)


def _as_image_list(images):
    """One image, a list of images, or a batch array -> a sequence of images (a batch array stays an array)."""
    from PIL import Image

    if isinstance(images, (str, os.PathLike, bytes, bytearray, Image.Image)):
        return [images]
    if hasattr(images, "__array__") and hasattr(images, "shape"):  # numpy, JAX and other arrays
        array = np.asarray(images)
        if array.ndim == 4:
            return array
        if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4)):
            return [array]
        raise UserError(f"cannot score an array of shape {array.shape}: expected one image [H, W] or [H, W, C] "
                        f"(C = 1, 3 or 4) or a batch [N, H, W, C]")
    if isinstance(images, (list, tuple)):
        return [np.asarray(x) if hasattr(x, "__array__") and hasattr(x, "shape") else x for x in images]
    raise UserError(f"cannot score a {type(images).__name__}: give image paths, PIL images or arrays "
                    f"(one image, a list of them, or a batch [N, H, W, C])")


def load(workdir: str, which: str = "latest", batch_size: int | None = None, progress: bool = True) -> Ranker:
    """The ranker saved in `workdir`: `which` is 'latest', 'best' (best test accuracy) or a step number;
    `batch_size` images are scored at a time (default: the run's --eval_batch_images); `progress=False`
    keeps its scoring free of progress bars.

    A workdir that a run is writing is read as it is: a step deleted while it was being read (the run
    keeps only its newest checkpoints) is not damaged; the newest step is read again instead."""
    for attempt in range(READ_ATTEMPTS):
        try:
            checkpoints = open_workdir(workdir)
        except FileNotFoundError:  # a step vanished while the checkpoints were listed
            continue
        try:
            step = resolve_step(checkpoints, which)
            try:
                config, params = _restore(checkpoints, step)
            except (UnreadableCheckpoint, FileNotFoundError) as error:
                if not os.path.isdir(os.path.join(checkpoints.directory, str(step))) and attempt + 1 < READ_ATTEMPTS:
                    continue  # rotated away by the run that writes this workdir
                if isinstance(error, FileNotFoundError):
                    raise UserError(f"checkpoint step {step} in {checkpoints.directory} is incomplete: {error}") from None
                readable = [s for s in checkpoints.all_steps() if s != step and _is_readable(checkpoints, s)]
                hint = (f"readable steps: {', '.join(map(str, readable))} (choose one with --checkpoint=STEP)"
                        if readable else "no other step is readable")
                raise UserError(f"{error}; {hint}") from None
        finally:
            checkpoints.close()
        return Ranker(config, params, step, batch_size, progress)
    raise UserError(f"the checkpoints of {workdir} kept changing while they were read; try again")


def _restore(checkpoints: Checkpoints, step: int):
    """(config, the whole network's parameters) of a checkpoint; a run trained on cached features saved its
    ranking layer there and its frozen backbone beside the checkpoints."""
    config = checkpoints.restore_config(step)
    target = abstract(param_shapes(config), sharding.replicated(sharding.make_mesh()))
    if not has_frozen_backbone(checkpoints.workdir):
        return config, checkpoints.restore_params(step, target)
    head = checkpoints.restore_params(step, {"head": target["head"]})
    return config, {**load_backbone(checkpoints.workdir, target), **head}


def _is_readable(checkpoints: Checkpoints, step: int) -> bool:
    try:
        _restore(checkpoints, step)
    except UserError:
        return False
    return True


def resolve_step(checkpoints: Checkpoints, which: str | int) -> int:
    if which == "latest":
        return checkpoints.latest_step()
    if which == "best":
        return checkpoints.best_step()
    steps = checkpoints.all_steps()
    if str(which).isdigit() and int(which) in steps:
        return int(which)
    raise UserError(f"no checkpoint {which!r}; use latest, best or one of the steps {steps}")
