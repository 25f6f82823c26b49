"""The streaming input pipeline, for datasets whose images do not fit in memory.

grain worker processes build each step's batch: its plan (a function of seed and step,
see batches.BatchPlans), then this process's share of its images, read from the
prepared array_record files and decoded there. Batches come out in step order, the same
batches the in-memory table gives. The pipeline's position is the step: a checkpoint's
step is all a resumed run needs to continue with the batch an uninterrupted one would see.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Iterator

import numpy as np

from relrank.data.batches import BatchPlans, fill
from relrank.data.datasets import StoredImages

MEMORY_FRACTION = 0.25  # --input_pipeline=auto keeps image tables in memory up to this share of the RAM
MEMORY_CAP = 16 * 2**30


def memory_budget() -> int:
    """Bytes of image tables that --input_pipeline=auto keeps in memory."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 8 * 2**30
    return int(min(MEMORY_CAP, MEMORY_FRACTION * ram))


def table_bytes(num_images: int, size: int) -> int:
    return num_images * size * size * 3


class StepBatch:
    """Step -> batch with this process's rows of the images; sent to each grain worker (so picklable)."""

    def __init__(self, plans: BatchPlans, images: StoredImages, rows: slice):
        self.plans, self.images, self.rows = plans, images, rows

    def __call__(self, step: int) -> dict:
        return fill(self.plans(int(step)), self.images.__getitem__, self.rows)


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def streaming_batches(plans: BatchPlans, images: StoredImages, start_step: int, end_step: int,
                      rows: slice = slice(None), workers: int = 0) -> Iterator[dict]:
    """Batches of steps [start_step, end_step), decoded by `workers` grain processes (0: in this process)."""
    import grain

    if end_step <= start_step:
        return iter(())
    dataset = grain.MapDataset.range(start_step, end_step).map(StepBatch(plans, images, rows)).to_iter_dataset()
    if not workers:
        return iter(dataset)
    _parse_absl_flags()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2))
    return OwnedBatches(iter(dataset))


class OwnedBatches:
    """grain's batches as arrays of this process's own memory, and a `close` that stops its workers.

    Worker batches arrive as views of shared memory; a CPU device_put may keep such a view alive
    to the end, which leaves the shared memory behind ("leaked shared_memory objects").
    """

    def __init__(self, iterator):
        self.iterator = iterator

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return {name: np.array(value) for name, value in next(self.iterator).items()}

    def close(self) -> None:
        """Stop the workers and let go of the iterator (its last batches hold shared memory until deleted)."""
        if self.iterator is not None:
            self.iterator.close()
            self.iterator = None
            gc.collect()  # its objects hold each other: free them, and the shared memory, now


def _parse_absl_flags() -> None:
    """grain's worker processes read absl flags, which a plain argparse program has not parsed."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS(sys.argv[:1])


def peak_memory_mib() -> dict:
    """Peak resident memory of this process and of the largest of its ended workers, in MiB (Linux)."""
    import resource

    return {f"peak_memory_{name}_mib": round(resource.getrusage(who).ru_maxrss / 1024, 1)
            for name, who in (("process", resource.RUSAGE_SELF), ("largest_worker", resource.RUSAGE_CHILDREN))}

