"""Batches of pairs in a deterministic, resumable order, prefetched in a background thread."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import numpy as np

from relrank.data import Pairs


def steps_per_epoch(num_pairs: int, batch_pairs: int) -> int:
    return -(-num_pairs // batch_pairs)


def epoch_order(num_pairs: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled pair order of one epoch: a function of (seed, epoch) only, so resuming is exact."""
    return np.random.default_rng([seed, epoch]).permutation(num_pairs)


def make_batch(images: np.ndarray, pairs: Pairs, order: np.ndarray, batch_pairs: int) -> dict:
    """Gather the pairs `order` (at most batch_pairs) into a batch, padding with weight-0 pairs."""
    n = len(order)
    pad = batch_pairs - n
    index = np.concatenate([order, np.zeros(pad, order.dtype)]) if pad else order
    return dict(
        images=np.stack([images[pairs.a[index]], images[pairs.b[index]]], axis=1),
        target=pairs.target[index],
        weight=np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]),
    )


def train_batches(images: np.ndarray, pairs: Pairs, batch_pairs: int, seed: int, start_step: int, end_step: int) -> Iterator[dict]:
    """Batches for global steps [start_step, end_step); every pair once per epoch, last batch padded."""
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
