"""The resume policy in one place: which checkpoint a run continues from, and which changes it refuses."""

from __future__ import annotations

import dataclasses
import os
import sys

import jax

from relrank.config import Config
from relrank.errors import Interrupted, UserError
from relrank.model.network import random_params
from relrank.model.weights import starting_params
from relrank.parallel import distributed, sharding
from relrank.run.checkpoints import Checkpoints, UnreadableCheckpoint, abstract, checkpoint_dir
from relrank.train.step import init_state, make_task


def check_resumable(saved: Config, config: Config, workdir: str, extend: bool) -> None:
    """A one-line error when `config` would change what the run saved in `workdir` means (any field but the
    HOW_RUN_FIELDS, which may change); with `extend`, a finished run may be given more epochs."""
    old, new = saved.meaning(), config.meaning()
    if not saved.data_identity or not config.data_identity:  # a run saved before relrank recorded it
        old.pop("data_identity"), new.pop("data_identity")
    changed = [k for k in new if old.get(k) != new[k] and not k.startswith("preprocessing.")]
    if extend and changed == ["epochs"] and new["epochs"] > old["epochs"]:
        return
    if not changed:
        return
    shown = ", ".join("the data (its pairs or images changed, or --manual_dir names other data)" if k == "data_identity"
                      else f"{k} {old.get(k)!r} -> {new[k]!r}" for k in changed)
    hint = "use another --workdir (or delete this one) to start afresh"
    if "epochs" in changed and new["epochs"] > old["epochs"]:
        hint += "; to train this run longer on purpose, add --extend (its learning-rate schedule then stretches to the new length)"
    raise UserError(f"workdir {workdir} holds a run with other settings, which resuming would change: {shown}; {hint}")


def restore_or_init(config: Config, workdir: str, mesh, total_steps: int, extend: bool, frozen: dict | None = None):
    """(checkpoints, config, state, resumed step or None): the newest readable checkpoint, else the starting weights.

    The config keeps the preprocessing the run was trained with. Unreadable checkpoints newer than the one
    resumed are named and moved to <workdir>/unreadable_checkpoints/. With `frozen` (the whole network's
    starting parameters, of a run on cached features) the state holds the ranking layer alone.
    """
    def trained(params: dict) -> dict:
        return {"head": params["head"]} if frozen is not None else params

    checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints)
    unreadable = []
    for step in reversed(checkpoints.all_steps()):
        try:
            saved = checkpoints.restore_config(step)
            check_resumable(saved, config, workdir, extend)
            resumed = dataclasses.replace(config, preprocessing=saved.preprocessing)  # as it was trained
            task = make_task(resumed, total_steps, "features" if frozen is not None else "images")
            shapes = jax.eval_shape(lambda: init_state(task, trained(random_params(resumed))))  # shapes only
            state = checkpoints.restore_state(step, abstract(shapes, sharding.replicated(mesh)))
        except UnreadableCheckpoint as error:
            print(f"warning: {error}", file=sys.stderr)
            unreadable.append(step)
            continue
        if unreadable:
            _set_aside(checkpoints, unreadable, step)
        return checkpoints, resumed, state, step
    if unreadable:
        raise UserError(f"no checkpoint in {checkpoints.directory} is readable (steps {', '.join(map(str, unreadable))});"
                        f" move that folder away to start afresh")
    start = trained(frozen if frozen is not None else starting_params(config))
    return checkpoints, config, init_state(make_task(config, total_steps, "features" if frozen is not None else "images"), start), None


def _set_aside(checkpoints: Checkpoints, unreadable: list[int], resumed: int) -> None:
    if distributed.is_main():
        for bad in unreadable:
            print(f"moved unreadable step {bad} to {checkpoints.set_aside(bad)}", file=sys.stderr)
        print(f"resuming from step {resumed}, the newest readable checkpoint", file=sys.stderr)
    distributed.barrier("unreadable checkpoints set aside")
    checkpoints.manager.reload()


def last_checkpoint(workdir: str) -> int | None:
    """The newest checkpoint's step in `workdir`, or None."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        return None
    checkpoints = Checkpoints(workdir, read_only=True)
    last = checkpoints.latest_step()
    checkpoints.close()
    return last


def interrupted(workdir: str, by_peer: bool = False) -> Interrupted:
    """The one-line error for a stopped run: where it can resume from."""
    what = "stopped: another process of this run was interrupted" if by_peer else "interrupted"
    last = last_checkpoint(workdir)
    if last is None:
        return Interrupted(f"{what} before the first checkpoint; rerun the same command to start again")
    return Interrupted(f"{what}; last checkpoint: step {last}; rerun the same command to resume")
