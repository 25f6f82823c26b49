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
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import numpy as np

from relrank.data import LabelledPairs


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


def make_batch(images: np.ndarray, pairs: LabelledPairs, order: np.ndarray, batch_pairs: int) -> dict:
    """Gather the pairs `order` (at most batch_pairs) into a pair batch, padding with weight-0 pairs."""
    n = len(order)
    pad = batch_pairs - n
    index = np.concatenate([order, np.zeros(pad, order.dtype)]) if pad else order
    real = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return pairs_batch(np.stack([images[pairs.a[index]], images[pairs.b[index]]], axis=1), pairs.target[index],
                       pairs.labelled[index] * real[:, None])


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

    def batch(self, images: np.ndarray, seed: int, step: int) -> dict:
        chosen = np.sort(np.random.default_rng([seed, step]).choice(self.num_images, self.batch_images, replace=False))
        a, b = chosen[self.first], chosen[self.second]
        keys = self._keys(a, b)
        position = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        found = self.sorted_keys[position] == keys
        rows = self.order[position]
        target = self.pairs.target[rows]
        target = np.where((self.pairs.a[rows] == a)[:, None], target, 1.0 - target)  # as (a, b) are ordered here
        weight = self.pairs.labelled[rows] * found[:, None]
        return dict(images=images[chosen], a=self.first, b=self.second, target=target.astype(np.float32),
                    weight=weight.astype(np.float32))


def train_batches(images: np.ndarray, pairs: LabelledPairs, batch_pairs: int, seed: int, start_step: int,
                  end_step: int, batch_images: int = 0) -> Iterator[dict]:
    """Batches for global steps [start_step, end_step): pair batches, or image groups with `batch_images`."""
    if batch_images:
        groups = ImageGroups(pairs, len(images), batch_images)
        for step in range(start_step, end_step):
            yield groups.batch(images, seed, step)
        return
    per_epoch = steps_per_epoch(len(pairs), batch_pairs)
    for step in range(start_step, end_step):
        epoch, k = divmod(step, per_epoch)
        order = epoch_order(len(pairs), seed, epoch)[k * batch_pairs : (k + 1) * batch_pairs]
        yield make_batch(images, pairs, order, batch_pairs)


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
        raise failure[0]
