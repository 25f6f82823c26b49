"""The paper's optimizer: Lasagne RMSProp with one learning rate for the backbone and one for the head."""

from __future__ import annotations

import jax
import optax

HEAD_LAYERS = ("head",)


def param_groups(params) -> dict:
    """A pytree like `params` labelling each leaf 'head' or 'backbone'."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "head" if path[0].key in HEAD_LAYERS else "backbone", params
    )


def lasagne_rmsprop(learning_rate: float) -> optax.GradientTransformation:
    """Lasagne's rmsprop: a = 0.9 a + 0.1 g^2;  w -= lr * g / sqrt(a + 1e-6).

    A learning rate of 0 freezes the group (no optimizer state is kept for it).
    """
    if learning_rate == 0:
        return optax.set_to_zero()
    return optax.rmsprop(learning_rate, decay=0.9, eps=1e-6, eps_in_sqrt=True)


def make_optimizer(backbone_lr: float, head_lr: float) -> optax.GradientTransformation:
    return optax.partition(
        {"backbone": lasagne_rmsprop(backbone_lr), "head": lasagne_rmsprop(head_lr)}, param_groups
    )
