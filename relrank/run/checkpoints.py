"""Orbax checkpoints of a run: parameters, optimizer state and RNG, plus the run's Config.

Layout: <workdir>/checkpoints/<step>/{params, train, config, checksums}. The
last `keep_checkpoints` steps are kept, and the step with the best validation
accuracy (test accuracy when the run holds out no validation split). `checksums`
holds a fingerprint of every array, checked on restore: Orbax restores a
bit-flipped file without complaint, relrank does not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from relrank.config import Config
from relrank.errors import UserError

SELECTION_METRICS = ("val_accuracy", "test_accuracy")  # the first one a run logs picks its best checkpoint
UNREADABLE_DIR = "unreadable_checkpoints"


class UnreadableCheckpoint(UserError):
    """A checkpoint step whose files are missing, damaged or changed since they were written."""

    def __init__(self, directory: str, step: int, why: str):
        super().__init__(f"checkpoint step {step} in {directory} is unreadable: {why}")
        self.step = step


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def _best_metric(metrics: dict) -> float:
    """Validation accuracy when the run holds out a validation split, else test accuracy."""
    return next(metrics[name] for name in SELECTION_METRICS if name in metrics)


def _why(error: BaseException) -> str:
    """The root cause of a restore error in one short line (TensorStore's own message is a page long)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    damaged = re.search(r'Error reading "([^/"]+)/[^"]*" in OCDBT database[^:]*: (.*)', text)
    if damaged:
        return f"array {damaged.group(1)} is damaged or missing ({damaged.group(2)})"
    return text[:300]


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
    """sum_i bits_i * w_i mod 2^32 with odd weights w_i: any single flipped bit changes it."""
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    bits = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize])
    bits = bits.reshape(-1).astype(jnp.uint32)
    weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(0x9E3779B1) | jnp.uint32(1)
    return jnp.sum(bits * weights, dtype=jnp.uint32)


@jax.jit
def _summarise(tree) -> tuple[jax.Array, list]:
    """(all values finite, one fingerprint per array) of a pytree, in one compiled pass."""
    leaves = jax.tree_util.tree_leaves(tree)
    finite = jnp.array(True)
    for x in leaves:
        if jnp.issubdtype(x.dtype, jnp.floating):
            finite &= jnp.all(jnp.isfinite(x))
    return finite, [_leaf_fingerprint(x) for x in leaves]


def fingerprints(tree) -> list[int]:
    return [int(f) for f in _summarise(tree)[1]]


class Checkpoints:
    """Save and restore the checkpoints of one workdir."""

    def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
        self.workdir = workdir
        for step in _damaged_metrics(checkpoint_dir(workdir)):  # Orbax reads every step's metrics when it starts
            if read_only:
                raise UnreadableCheckpoint(checkpoint_dir(workdir), step, "its metrics file is damaged; the next "
                                           "training run on this workdir sets the step aside (or move it away)")
            print(f"checkpoint step {step}: its metrics file is damaged; moved the step to "
                  f"{_move_aside(workdir, step)}", file=sys.stderr)
        with _orbax_quiet():
            self.manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=_options(keep, read_only))


    @property
    def directory(self) -> str:
        return os.fspath(self.manager.directory)

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the best validation accuracy (test accuracy without a validation split; the latest
        step if none was evaluated)."""
        return self.manager.best_step()

    def save(self, step: int, state, config: Config, metrics: dict | None = None) -> None:
        """Save `state` at `step` (asynchronously); refuses non-finite parameters."""
        finite, sums = _summarise(dict(params=state.params, train=_train_items(state)))
        if not bool(finite):
            raise UserError(f"parameters became non-finite by step {step}; training stopped without saving")
        n_params = len(jax.tree_util.tree_leaves(state.params))
        sums = [int(s) for s in sums]
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            train=ocp.args.StandardSave(_train_items(state)),
            config=ocp.args.JsonSave(config.to_json()),
            checksums=ocp.args.JsonSave(dict(params=sums[:n_params], train=sums[n_params:])),
        )
        try:
            self.manager.save(step, args=args, metrics=metrics, force=True)
        except Exception as error:
            raise self._disk_full(error, step) or error

    def restore_config(self, step: int) -> Config:
        try:
            with _orbax_quiet():
                restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
            return Config.from_json(restored["config"])
        except Exception as error:  # a missing or damaged file fails in many ways (FileNotFoundError, JSON, ...)
            raise UnreadableCheckpoint(self.directory, step, f"its config cannot be read ({_why(error)})") from None

    def restore_params(self, step: int, param_shapes):
        """The parameters saved at `step`, with the shapes and shardings of `param_shapes`."""
        return self._restore(step, params=param_shapes)["params"]

    def restore_state(self, step: int, abstract_state):
        """The full TrainState saved at `step`, with the shapes and shardings of `abstract_state`."""
        restored = self._restore(step, params=abstract_state.params, train=_train_items(abstract_state))
        return abstract_state.replace(params=restored["params"], **restored["train"])

    def _check_shapes(self, step: int, param_shapes) -> None:
        """A one-line 'does not fit' error when the saved parameters have other shapes than the model's."""
        reader = ocp.StandardCheckpointer()
        try:
            saved = reader.metadata(os.path.join(self.directory, str(step), "params")).item_metadata
            saved_shapes = {_key(path): tuple(leaf.shape) for path, leaf in _leaves_with_path(saved.tree)}
        except Exception:  # no readable metadata: the restore itself will say what is wrong
            return
        finally:
            reader.close()
        for path, leaf in _leaves_with_path(param_shapes):
            key, shape = _key(path), tuple(leaf.shape)
            if saved_shapes.get(key, shape) != shape:
                raise UserError(f"checkpoint step {step} in {self.directory} does not fit the model: {key} has shape "
                                f"{saved_shapes[key]} in the checkpoint but {shape} in the model")

    def _restore(self, step: int, **abstract_items) -> dict:
        args = {name: ocp.args.StandardRestore(tree) for name, tree in abstract_items.items()}
        has_checksums = os.path.isdir(os.path.join(self.directory, str(step), "checksums"))
        if has_checksums:
            args["checksums"] = ocp.args.JsonRestore()
        for name in abstract_items:
            self._check_files(step, name)
        try:
            with _orbax_quiet():
                self._check_shapes(step, abstract_items["params"])
                restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        except Exception as error:  # e.g. an item's folder is gone
            raise UnreadableCheckpoint(self.directory, step, _why(error)) from None
        if has_checksums:
            for name in abstract_items:
                if fingerprints(restored[name]) != restored["checksums"][name]:
                    raise UnreadableCheckpoint(self.directory, step, f"its {name} arrays do not match the checksums "
                                               "saved with them (the files changed after they were written)")
        return restored

    def _check_files(self, step: int, item: str) -> None:
        """Read the item's index and arrays with TensorStore before Orbax does.

        Orbax reads all arrays at once and, when one fails, abandons the rest with a
        page of asyncio errors; reading them here first (a few at a time) names the
        damaged array in one line. It costs about one more read of the item.
        """
        import tensorstore as ts

        folder = os.path.join(self.directory, str(step), item)
        if not os.path.exists(os.path.join(folder, "manifest.ocdbt")):
            return  # not an OCDBT item: the restore itself will tell
        kvstore = {"driver": "ocdbt", "base": {"driver": "file", "path": f"{folder}/"}}  # a spec, not a URL: '#', '?'
        try:
            keys = ts.KvStore.open(kvstore).result().list().result()
        except Exception as error:  # a truncated or overwritten manifest
            raise UnreadableCheckpoint(self.directory, step, f"the index of its {item} is damaged ({_why(error)})") from None
        arrays = sorted({key.decode().rsplit("/", 1)[0] for key in keys if key.endswith((b"/.zarray", b"/zarr.json"))})
        for start in range(0, len(arrays), 4):
            window = arrays[start : start + 4]
            try:
                reads = [ts.open({"driver": _zarr_driver(keys, name), "kvstore": {**kvstore, "path": f"{name}/"}},
                                 read=True).result().read() for name in window]
                for read in reads:
                    read.result()
            except Exception as error:
                raise UnreadableCheckpoint(self.directory, step, f"{item} {_why(error)}") from None

    def set_aside(self, step: int) -> str:
        """Move an unreadable step out of the way (to <workdir>/unreadable_checkpoints/); returns where."""
        target = _move_aside(self.workdir, step)
        self.manager.reload()
        return target

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except Exception as error:
            raise self._disk_full(error, self.latest_step()) or error

    def _disk_full(self, error: BaseException, step) -> UserError | None:
        """A one-line error if `error` (or its cause) is a full disk, saying which checkpoints are kept."""
        cause = error
        while cause is not None and not (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) \
                and "No space left on device" not in str(cause):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            return None
        kept = [s for s in self.all_steps() if s != step]
        return UserError(f"the disk is full: checkpoint step {step} could not be written to {self.directory}; "
                         f"the earlier checkpoints ({', '.join(map(str, kept)) or 'none'}) are kept. Free some space "
                         f"and rerun the same command to resume")

    def close(self) -> None:
        self.manager.close()


def _move_aside(workdir: str, step: int) -> str:
    target_root = os.path.join(os.path.abspath(workdir), UNREADABLE_DIR)
    os.makedirs(target_root, exist_ok=True)
    target, n = os.path.join(target_root, str(step)), 1
    while os.path.exists(target):
        target, n = os.path.join(target_root, f"{step}.{n}"), n + 1
    shutil.move(os.path.join(checkpoint_dir(workdir), str(step)), target)
    return target


def _damaged_metrics(directory: str) -> list[int]:
    """Steps whose saved metrics (the accuracy that picks the best step) are not JSON."""
    damaged = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        path = os.path.join(directory, name, "metrics", "metrics")
        if name.isdigit() and os.path.isfile(path):
            try:
                with open(path) as f:
                    json.load(f)
            except (OSError, ValueError):
                damaged.append(int(name))
    return damaged


def _zarr_driver(keys: list[bytes], array: str) -> str:
    return "zarr3" if f"{array}/zarr.json".encode() in keys else "zarr"


def _train_items(state) -> dict:
    return dict(step=state.step, opt_state=state.opt_state, rng=state.rng)


def _leaves_with_path(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _key(path) -> str:
    return ".".join(str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))) for p in path)


def _options(keep: int, read_only: bool) -> ocp.CheckpointManagerOptions:
    """Keep the `keep` newest steps and the best one (by validation, else test accuracy)."""
    policy = ocp.checkpoint_managers
    return ocp.CheckpointManagerOptions(
        best_fn=_best_metric,
        best_mode="max",
        read_only=read_only,
        preservation_policy=policy.AnyPreservationPolicy(
            [
                policy.LatestN(n=keep),
                policy.BestN(get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False),
            ]
        ),
    )


@contextlib.contextmanager
def _orbax_quiet():
    """Orbax's absl WARNINGs (a read-only manager's settings, older checkpoints' missing metadata) held back:
    they say nothing a user can act on, and came with every load."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def abstract(tree, sharding=None):
    """ShapeDtypeStructs of `tree`, optionally with a sharding (for restoring onto a mesh)."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def open_workdir(workdir: str) -> Checkpoints:
    """The checkpoints of an existing workdir, or a one-line error if there are none."""
    if not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir} does not exist")
    if not os.path.isdir(checkpoint_dir(workdir)):
        raise UserError(f"workdir {workdir} holds no checkpoint (expected {checkpoint_dir(workdir)})")
    checkpoints = Checkpoints(workdir, read_only=True)
    if checkpoints.latest_step() is None:
        raise UserError(f"workdir {workdir} holds no checkpoint (expected {checkpoint_dir(workdir)})")
    return checkpoints
