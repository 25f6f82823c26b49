"""Data parallelism with jax.sharding: a 1-D mesh over devices, batches' images split, parameters replicated.

Training's mesh spans the devices of every process (see distributed.py); each process then
holds, reads and feeds only its share of a batch's images (`process_rows`). Scoring outside
training (`Ranker`) uses this process's devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from relrank.errors import UserError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: this process's)."""
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def global_mesh() -> Mesh:
    """A 1-D mesh over the devices of all processes, each process's devices side by side."""
    return make_mesh(sorted(jax.devices(), key=lambda d: (d.process_index, d.id)))


def process_rows(batch: int, mesh: Mesh) -> slice:
    """The rows of a `batch`-row array (split over `mesh`) that this process's devices hold."""
    mine = [k for k, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    per_device = batch // mesh.size
    return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (image) axis across devices."""
    return NamedSharding(mesh, P(DATA_AXIS))


def train_batch_sharding(mesh: Mesh) -> dict:
    """A training batch: its images split across devices, its (small) pair index replicated.

    Each device scores its images; the pair loss gathers the scores it needs.
    """
    return dict(images=batch_sharding(mesh), a=replicated(mesh), b=replicated(mesh), target=replicated(mesh),
                weight=replicated(mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_divisible(batch: int, mesh: Mesh, what: str) -> None:
    if batch % mesh.size:
        raise UserError(f"{what} ({batch}) must be divisible by the number of devices ({mesh.size})")


def put_batch(batch: dict, mesh: Mesh) -> dict:
    """A training batch onto the mesh: its images (this process's rows, `process_rows`) split across
    devices, its pair arrays (the same in every process) replicated."""
    shardings = train_batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, {name: shardings[name] for name in batch})
    return {name: put_local(value, shardings[name], mesh) for name, value in batch.items()}


def put_local(rows: np.ndarray, sharding: NamedSharding, mesh: Mesh) -> jax.Array:
    """A global array from this process's share: its rows if `sharding` splits them, else all of it."""
    if jax.process_count() == 1:
        return jax.device_put(rows, sharding)
    split = sharding.spec != P()
    shape = (len(rows) * mesh.size // _local_devices(mesh), *rows.shape[1:]) if split else rows.shape
    return jax.make_array_from_process_local_data(sharding, rows, shape)


def put_images(images: np.ndarray, mesh: Mesh) -> jax.Array:
    """A batch of images (all rows; each process gives its devices theirs) split over the mesh."""
    return put_local(images[process_rows(len(images), mesh)], batch_sharding(mesh), mesh)


def _local_devices(mesh: Mesh) -> int:
    return sum(d.process_index == jax.process_index() for d in mesh.devices.flat)


def put_replicated(tree, mesh: Mesh):
    """`tree` (the same in every process) replicated on every device of the mesh."""
    if jax.process_count() == 1:
        return jax.device_put(tree, replicated(mesh))
    return jax.tree_util.tree_map(lambda x: put_local(np.asarray(x), replicated(mesh), mesh), tree)
