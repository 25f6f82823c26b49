"""The frozen backbone of a run trained on cached features, saved once beside its checkpoints.

Such a run's checkpoints hold the ranking layer alone (`head`); `<workdir>/backbone.safetensors` holds
the rest of the network as the run started it (ported weights or its seeded random init), with a
checksum, so that the workdir alone scores images as any run's does.
"""

from __future__ import annotations

import hashlib
import os

import jax
import numpy as np

from relrank.errors import UserError
from relrank.run.workdir import write_atomic

BACKBONE_FILE = "backbone.safetensors"


def backbone_path(workdir: str) -> str:
    return os.path.join(workdir, BACKBONE_FILE)


def has_frozen_backbone(workdir: str) -> bool:
    return os.path.isfile(backbone_path(workdir))


def _flat(params: dict) -> dict[str, np.ndarray]:
    """{'layer/sub/kernel': array} of every parameter but the head's."""
    leaves = jax.tree_util.tree_flatten_with_path({k: v for k, v in params.items() if k != "head"})[0]
    return {"/".join(str(getattr(p, "key", p)) for p in path): np.ascontiguousarray(np.asarray(leaf, np.float32))
            for path, leaf in leaves}


def _checksum(tensors: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].tobytes())
    return digest.hexdigest()


def save_backbone(workdir: str, params: dict) -> None:
    """Write every parameter of `params` but the head's."""
    from safetensors.numpy import save

    tensors = _flat(jax.device_get(params))
    write_atomic(backbone_path(workdir), save(tensors, metadata={"sha256": _checksum(tensors)}))


def load_backbone(workdir: str, shapes: dict) -> dict:
    """The saved backbone, as a pytree like `shapes` (the whole network's parameters) without its head."""
    from safetensors import safe_open

    path = backbone_path(workdir)
    try:
        with safe_open(path, framework="numpy") as f:
            tensors, checksum = {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {}).get("sha256")
    except Exception as error:  # SafetensorError, OSError, ... for a damaged file
        raise UserError(f"{path} is unreadable ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
                        f"the run's frozen backbone is lost: train it again") from None
    if checksum != _checksum(tensors):
        raise UserError(f"{path} is damaged (its checksum does not match); the run's frozen backbone is lost: "
                        f"train it again")
    expected = _flat(jax.tree_util.tree_map(lambda s: np.zeros((0,), np.float32), shapes))
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise UserError(f"{path} has no {missing[0]}: it belongs to another model")
    backbone = {k: v for k, v in shapes.items() if k != "head"}
    paths = jax.tree_util.tree_flatten_with_path(backbone)[0]
    leaves = [tensors["/".join(str(getattr(p, "key", p)) for p in path)] for path, _ in paths]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(backbone), leaves)
