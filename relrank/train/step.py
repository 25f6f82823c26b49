"""The pure, jit-compiled pairwise train step.

State and batches are plain pytrees. A batch holds N images and P pairs among them, annotated
for A attributes (see relrank/data/batches.py): images [N, L, L, 3] uint8, a and b [P] (rows of
images), target [P, A] in {0, .5, 1}, weight [P, A] (0 marks padding and attributes a pair is
not annotated for). Each image is scored once, whatever number of pairs it is in.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from relrank.config import Config
from relrank.model.losses import l2_penalty, ranknet_loss
from relrank.model.network import ModelGraph, model_graph, scores
from relrank.parallel.sharding import replicated, train_batch_sharding
from relrank.train import augment
from relrank.train.optim import loss_weight_decay, make_optimizer


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


@dataclasses.dataclass(frozen=True)
class Task:
    """What the step closes over: the network, the optimizer and the config."""

    network: ModelGraph
    tx: optax.GradientTransformation
    config: Config


def make_task(config: Config, total_steps: int | None = None, inputs: str = "images") -> Task:
    """The network on `inputs` (images, or cached features or activations: relrank/model/network.py) and the
    optimizer of `config`; schedules other than constant need the run's `total_steps`."""
    return Task(model_graph(config, inputs), make_optimizer(config, total_steps), config)


def init_state(task: Task, params: dict) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=task.tx.init(params),
        rng=jax.random.key_data(jax.random.key(task.config.seed)),
    )


def loss_fn(params, batch: dict, dropout_key: jax.Array, task: Task):
    images = batch["images"]
    if task.network.inputs != "images":
        if task.config.flip:  # the cached views of the image and of its mirror image: one of them
            images = augment.pick_views(jax.random.fold_in(dropout_key, 1), images)
    elif augment.enabled(task.config):
        images = augment.augment(jax.random.fold_in(dropout_key, 1), images, task.config.image_size, task.config)
    r = scores(task.network, params, images, dropout_key)
    rank_loss = ranknet_loss(r[batch["a"]], r[batch["b"]], batch["target"], batch["weight"])
    l2 = l2_penalty(params)
    correct, counted = ordered_pairs(r[batch["a"]], r[batch["b"]], batch["target"], batch["weight"])
    metrics = dict(rank_loss=rank_loss, l2=l2, pairs_correct=correct, pairs_counted=counted, score_spread=spread(r))
    return rank_loss + loss_weight_decay(task.config) * l2, metrics


def spread(scores: jax.Array) -> jax.Array:
    """How much the batch's scores [images, attributes] vary: the largest over attributes of their standard
    deviation over the images, relative to 1 + their mean magnitude (0 when the network has collapsed)."""
    return jnp.max(jnp.std(scores, axis=0) / (1.0 + jnp.mean(jnp.abs(scores), axis=0)))


def ordered_pairs(score_a: jax.Array, score_b: jax.Array, target: jax.Array, weight: jax.Array):
    """(correctly ordered, counted) annotated entries of the batch, ties skipped and a predicted tie wrong, as
    the paper's metric counts them: the training-pair accuracy that tells whether a run learns."""
    counted = weight * (target != 0.5)
    right = jnp.where(target == 1.0, score_a > score_b, score_a < score_b)
    return jnp.sum(counted * right), jnp.sum(counted)


def train_step(state: TrainState, batch: dict, task: Task) -> tuple[TrainState, dict]:
    """One optimizer update on a batch of pairs; returns the new state and its metrics."""
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, dropout_key, task)
    updates, opt_state = task.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, dict(loss=loss, **aux)


def jit_train_step(task: Task, mesh) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """`train_step` compiled for `mesh`: images sharded over devices, pairs and state replicated."""
    return jax.jit(
        lambda state, batch: train_step(state, batch, task),
        in_shardings=(replicated(mesh), train_batch_sharding(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=0,
    )
