"""Orbax checkpoints of a run: parameters, optimizer state and RNG, plus the run's Config.

Layout: <workdir>/checkpoints/<step>/{params, train, config}. The last
`keep_checkpoints` steps are kept, and the step with the best test accuracy.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from relrank.config import Config
from relrank.errors import UserError

BEST_METRIC = "test_accuracy"


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def _best_metric(metrics: dict) -> float:
    return metrics[BEST_METRIC]


class Checkpoints:
    """Save and restore the checkpoints of one workdir."""

    def __init__(self, workdir: str, keep: int = 3, read_only: bool = False):
        policy = ocp.checkpoint_managers
        options = ocp.CheckpointManagerOptions(
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
        self.manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the best test accuracy (the latest step if none was evaluated)."""
        return self.manager.best_step()

    def save(self, step: int, state, config: Config, metrics: dict | None = None) -> None:
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            train=ocp.args.StandardSave(dict(step=state.step, opt_state=state.opt_state, rng=state.rng)),
            config=ocp.args.JsonSave(config.to_json()),
        )
        self.manager.save(step, args=args, metrics=metrics, force=True)

    def restore_config(self, step: int) -> Config:
        restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return Config.from_json(restored["config"])

    def restore_params(self, step: int, abstract_params):
        restored = self._restore(step, params=ocp.args.StandardRestore(abstract_params))
        return restored["params"]

    def restore_state(self, step: int, abstract_state):
        """The full TrainState saved at `step`, with the shapes and shardings of `abstract_state`."""
        abstract_train = dict(step=abstract_state.step, opt_state=abstract_state.opt_state, rng=abstract_state.rng)
        restored = self._restore(
            step,
            params=ocp.args.StandardRestore(abstract_state.params),
            train=ocp.args.StandardRestore(abstract_train),
        )
        train = restored["train"]
        return abstract_state.replace(params=restored["params"], **train)

    def _restore(self, step: int, **items):
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items))
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(
                f"checkpoint step {step} in {self.manager.directory} does not fit the model: {_first_line(error)}"
            ) from error

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


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
