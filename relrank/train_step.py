"""The pure, jit-compiled pairwise train step and the scoring function.

State and batches are plain pytrees. A batch holds B pairs:
  images [B, 2, H, W, 3] uint8 (pair member 0 and 1), target [B] in {0, .5, 1},
  weight [B] (0 marks padding in a last, partial batch).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from relrank.config import Config
from relrank.losses import l2_penalty, ranknet_loss
from relrank.model import build_model
from relrank.optim import make_optimizer
from relrank.preprocess import normalize
from relrank.sharding import batch_sharding, replicated


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


@dataclasses.dataclass(frozen=True)
class Task:
    """What the step functions close over: the model's graph, the optimizer and the config."""

    graphdef: Any
    tx: optax.GradientTransformation
    config: Config


def make_task(config: Config) -> Task:
    """The model graph (built abstractly, no weights computed) and the optimizer of `config`."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build_model(config)), nnx.Param)
    return Task(graphdef, make_optimizer(config.backbone_lr, config.head_lr), config)


def init_params(config: Config) -> dict:
    """Freshly initialised parameters, a nested dict {layer: {'kernel', 'bias'}}."""
    return jax.jit(lambda: nnx.to_pure_dict(nnx.state(build_model(config), nnx.Param)))()


def abstract_params(config: Config) -> dict:
    """Shapes and dtypes of the parameters of `config`, without computing them."""
    return nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: build_model(config)), nnx.Param))


def init_state(task: Task, params: dict) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=task.tx.init(params),
        rng=jax.random.key_data(jax.random.key(task.config.seed)),
    )


def scores(task: Task, params, images: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """r(image) for uint8 images [N, H, W, 3]."""
    model = nnx.merge(task.graphdef, params)
    x = normalize(images, task.config.preprocessing, jnp.dtype(task.config.compute_dtype))
    return model(x, dropout_key=dropout_key)


def fc7_features(task: Task, params, images, batch_images: int):
    """Deterministic fc7 features [N, fc_width] of uint8 images [N, H, W, 3], in batches (numpy out)."""
    import numpy as np

    model = nnx.merge(task.graphdef, params)
    dtype = jnp.dtype(task.config.compute_dtype)
    features = jax.jit(lambda x: model.features(normalize(x, task.config.preprocessing, dtype)).astype(jnp.float32))
    return np.concatenate([np.asarray(features(images[i : i + batch_images]))
                           for i in range(0, len(images), batch_images)])


def loss_fn(params, batch: dict, dropout_key: jax.Array, task: Task):
    images = batch["images"]
    n_pairs = images.shape[0]
    r = scores(task, params, images.reshape(2 * n_pairs, *images.shape[2:]), dropout_key)
    r = r.reshape(n_pairs, 2)
    rank_loss = ranknet_loss(r[:, 0], r[:, 1], batch["target"], batch["weight"])
    l2 = l2_penalty(params)
    return rank_loss + task.config.weight_decay * l2, dict(rank_loss=rank_loss, l2=l2)


def train_step(state: TrainState, batch: dict, task: Task) -> tuple[TrainState, dict]:
    """One RMSProp update on a batch of pairs; returns the new state and its metrics."""
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, dropout_key, task)
    updates, opt_state = task.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, dict(loss=loss, **aux)


def jit_train_step(task: Task, mesh) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """`train_step` compiled for `mesh`: batch sharded over devices, state replicated."""
    return jax.jit(
        lambda state, batch: train_step(state, batch, task),
        in_shardings=(replicated(mesh), batch_sharding(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=0,
    )


def jit_scores(task: Task, mesh) -> Callable[[Any, jax.Array], jax.Array]:
    """Deterministic scoring compiled for `mesh` (images sharded, params replicated)."""
    return jax.jit(
        lambda params, images: scores(task, params, images),
        in_shardings=(replicated(mesh), batch_sharding(mesh)),
        out_shardings=replicated(mesh),
    )
