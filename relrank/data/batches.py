"""Training batches in a deterministic, resumable order, prefetched in a background thread.

A batch holds N images and P pairs among them, annotated for A attributes:
  images [N, L, L, 3] uint8; a, b [P] int32 (rows of images); target [P, A] in {0, .5, 1};
  weight [P, A] (0 marks padding, and attributes a pair is not annotated for).
Two ways to fill it:
  pair batches (the paper's, `batch_images=0`): `batch_pairs` pairs, each with its own two
    images (N = 2P); every pair once per epoch in a seeded order.
  image-group batches (`batch_images=K`): K images drawn at random, with every annotated pair
    among them (P = K(K-1)/2 slots). Each image then takes part in up to K-1 pairs for the cost
    of one forward pass: far more pairs per second where images are compared all-to-all (OSR,
    PubFig). An epoch is as many steps as give as many pair slots as there are pairs.
Both are a function of (seed, step) only, so a resumed run sees the batches an uninterrupted one does.
`BatchPlans` gives each step's plan: the batch with the rows of its images instead of the images.
`table_batches` fills plans from the in-memory image table; streaming.py fills the same plans in
grain worker processes from the prepared files. Either keeps only this process's share of the
images when several processes train together.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Callable, Iterable, Iterator

import numpy as np

from relrank.data.pairs import LabelledPairs
from relrank.errors import UserError


def steps_per_epoch(num_pairs: int, batch_pairs: int, batch_images: int = 0) -> int:
    per_step = batch_images * (batch_images - 1) // 2 if batch_images else batch_pairs
    return -(-num_pairs // per_step)


def epoch_order(num_pairs: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled pair order of one epoch: a function of (seed, epoch) only, so resuming is exact."""
    return np.random.default_rng([seed, epoch]).permutation(num_pairs)


def pairs_batch(images: np.ndarray, target: np.ndarray, weight: np.ndarray) -> dict:
    """A batch of pairs from images [B, 2, L, L, 3] (pair member 0 and 1) and target, weight [B, A]."""
    n = len(images)
    a = np.arange(0, 2 * n, 2, dtype=np.int32)
    return dict(images=images.reshape(2 * n, *images.shape[2:]), a=a, b=a + 1, target=target, weight=weight)


def pair_plan(pairs: LabelledPairs, order: np.ndarray, batch_pairs: int) -> dict:
    """The plan of a pair batch of the pairs `order` (at most batch_pairs), padded with weight-0 pairs.

    A plan is a batch whose `rows` [N] name the images (rows of the split) instead of holding them.
    """
    n = len(order)
    pad = batch_pairs - n
    index = np.concatenate([order, np.zeros(pad, order.dtype)]) if pad else order
    real = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    a = np.arange(0, 2 * batch_pairs, 2, dtype=np.int32)
    rows = np.stack([pairs.a[index], pairs.b[index]], axis=1).reshape(-1)
    return dict(rows=rows, a=a, b=a + 1, target=pairs.target[index],
                weight=(pairs.labelled[index] * real[:, None]).astype(np.float32))


class ImageGroups:
    """Image-group batches: `batch_images` images drawn at random per step, with every annotated pair among them.

    A pair annotated twice counts once per batch (its first annotation).
    """

    def __init__(self, pairs: LabelledPairs, num_images: int, batch_images: int):
        self.pairs, self.num_images, self.batch_images = pairs, num_images, batch_images
        keys = self._keys(pairs.a, pairs.b)
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]
        self.first, self.second = (x.astype(np.int32) for x in np.triu_indices(batch_images, 1))

    def _keys(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.minimum(a, b).astype(np.int64) * self.num_images + np.maximum(a, b)

    def plan(self, seed: int, step: int) -> dict:
        chosen = np.sort(np.random.default_rng([seed, step]).choice(self.num_images, self.batch_images, replace=False))
        a, b = chosen[self.first], chosen[self.second]
        keys = self._keys(a, b)
        position = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        found = self.sorted_keys[position] == keys
        rows = self.order[position]
        target = self.pairs.target[rows]
        target = np.where((self.pairs.a[rows] == a)[:, None], target, 1.0 - target)  # as (a, b) are ordered here
        weight = self.pairs.labelled[rows] * found[:, None]
        return dict(rows=chosen, a=self.first, b=self.second, target=target.astype(np.float32),
                    weight=weight.astype(np.float32))


@dataclasses.dataclass
class BatchPlans:
    """The plan of the batch of any global step: a function of (seed, step) only, so resuming is exact."""

    pairs: LabelledPairs
    num_images: int
    batch_pairs: int
    seed: int
    batch_images: int = 0

    def __post_init__(self):
        self.groups = ImageGroups(self.pairs, self.num_images, self.batch_images) if self.batch_images else None
        self.per_epoch = steps_per_epoch(len(self.pairs), self.batch_pairs, self.batch_images)
        self._order = (-1, np.zeros(0, np.int64))  # (epoch, its pair order): one shuffle per epoch, not per step

    def epoch_order(self, epoch: int) -> np.ndarray:
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.pairs), self.seed, epoch))
        return self._order[1]

    @property
    def images_per_batch(self) -> int:
        return self.batch_images or 2 * self.batch_pairs

    def __call__(self, step: int) -> dict:
        """The plan of the batch that trains step `step` + 1 (steps count from 0 here)."""
        if self.groups is not None:
            return self.groups.plan(self.seed, step)
        epoch, k = divmod(step, self.per_epoch)
        order = self.epoch_order(epoch)[k * self.batch_pairs : (k + 1) * self.batch_pairs]
        return pair_plan(self.pairs, order, self.batch_pairs)


def fill(plan: dict, images_of: Callable[[np.ndarray], np.ndarray], rows: slice = slice(None)) -> dict:
    """A batch from a plan: the images of its `rows` (all, or this process's share), fetched by `images_of`."""
    batch = dict(plan)
    batch["images"] = images_of(batch.pop("rows")[rows])
    return batch


def table_batches(plans: BatchPlans, images: np.ndarray, start_step: int, end_step: int,
                  rows: slice = slice(None)) -> Iterator[dict]:
    """Batches of steps [start_step, end_step) from the in-memory image table; `rows` keeps this process's
    share of each batch's images (see streaming.py for the same batches read from disk)."""
    for step in range(start_step, end_step):
        yield fill(plans(step), images.__getitem__, rows)


def prefetch(iterable: Iterable, size: int = 2) -> Iterator:
    """Produce items of `iterable` in a background thread, `size` ahead of the consumer."""
    items: queue.Queue = queue.Queue(maxsize=size)
    done = object()
    failure: list[BaseException] = []

    def produce():
        try:
            for item in iterable:
                items.put(item)
        except BaseException as error:  # re-raised in the consumer
            failure.append(error)
        items.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := items.get()) is not done:
        yield item
    if failure:
        if isinstance(failure[0], Exception) and not isinstance(failure[0], UserError):
            raise InputFault(f"{type(failure[0]).__name__}: {str(failure[0]).splitlines()[0][:200]}"
                             if str(failure[0]).strip() else type(failure[0]).__name__) from failure[0]
        raise failure[0]


class InputFault(Exception):
    """Reading or decoding the training batches failed (a worker process died, a file became unreadable, ...):
    the training state itself is intact."""
