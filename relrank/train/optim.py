"""Optimizers with one learning rate for the backbone and one for the head, and their schedules.

`rmsprop` is the paper's (Lasagne's RMSProp, L2 penalty added to the loss);
`adamw` decays weights (kernels, not biases) inside the update instead;
`sgd` is SGD with momentum (L2 penalty in the loss). Every group follows the
same schedule, scaled to its own peak rate: a linear warmup over the first
`warmup_fraction` of the run, then constant, cosine or linear decay to zero.
The schedule position is the optimizer state's step count, so it is saved with
every checkpoint and a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

import jax
import optax

from relrank.config import OPTIMIZERS
from relrank.model.registry import trunk_blocks

HEAD_LAYERS = ("head",)


def param_groups(params, frozen_blocks: int | None = None) -> dict:
    """A pytree like `params` labelling each leaf 'head' or 'backbone'; with `frozen_blocks` (--train_blocks),
    the stem and the first `frozen_blocks` blocks are 'frozen' instead."""
    def group(path) -> str:
        if path[0].key in HEAD_LAYERS:
            return "head"
        if frozen_blocks is not None and (path[0].key == "stem" or path[0].key == "blocks" and
                                          path[1].key < frozen_blocks):
            return "frozen"
        return "backbone"

    return jax.tree_util.tree_map_with_path(lambda path, _: group(path), params)


def kernels(params) -> dict:
    """A pytree like `params`, True for weights (kernels) and False for biases."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def learning_rate(peak: float, schedule: str, total_steps: int | None, warmup_fraction: float):
    """`peak`, or an optax schedule over `total_steps` (warmup, then constant/cosine/linear decay to 0)."""
    if schedule == "constant" and warmup_fraction == 0:
        return peak
    if not total_steps:
        raise ValueError(f"the {schedule!r} schedule needs the run's total number of steps")
    warmup = int(round(warmup_fraction * total_steps))
    rest = max(total_steps - warmup, 1)
    after = {
        "constant": optax.constant_schedule(peak),
        "cosine": optax.cosine_decay_schedule(peak, rest),
        "linear": optax.linear_schedule(peak, 0.0, rest),
    }[schedule]
    if not warmup:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def lasagne_rmsprop(lr) -> optax.GradientTransformation:
    """Lasagne's rmsprop: a = 0.9 a + 0.1 g^2;  w -= lr * g / sqrt(a + 1e-6)."""
    return optax.rmsprop(lr, decay=0.9, eps=1e-6, eps_in_sqrt=True)


def group_optimizer(name: str, lr, weight_decay: float, momentum: float) -> optax.GradientTransformation:
    if name == "rmsprop":
        return lasagne_rmsprop(lr)
    if name == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay, mask=kernels)
    if name == "sgd":
        return optax.sgd(lr, momentum=momentum or None)
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")


def make_optimizer(config, total_steps: int | None = None) -> optax.GradientTransformation:
    """The config's optimizer, per parameter group; a learning rate of 0 freezes a group (no state kept), as
    --train_blocks freezes the blocks before the last ones."""
    def group(peak: float) -> optax.GradientTransformation:
        if peak == 0:
            return optax.set_to_zero()
        lr = learning_rate(peak, config.schedule, total_steps, config.warmup_fraction)
        return group_optimizer(config.optimizer, lr, config.weight_decay, config.momentum)

    frozen = trunk_blocks(config) if config.train_blocks else None
    return optax.partition({"backbone": group(config.backbone_lr), "head": group(config.head_lr),
                            "frozen": optax.set_to_zero()}, lambda params: param_groups(params, frozen))


def loss_weight_decay(config) -> float:
    """The L2 coefficient added to the loss: the configured one, except for AdamW, which decays in the update."""
    return 0.0 if config.optimizer == "adamw" else config.weight_decay
