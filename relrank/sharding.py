"""Data parallelism with jax.sharding: a 1-D mesh over the local devices, batch sharded, parameters replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from relrank.errors import UserError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


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
    """A training batch onto the mesh (images split across devices, pairs replicated)."""
    return jax.device_put(batch, train_batch_sharding(mesh))


def put_replicated(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))
