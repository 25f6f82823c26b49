"""The network as every part of relrank uses it: graph, parameters, scores and features.

Training (`relrank/train/step.py`), evaluation, scoring (`relrank/use/ranker.py`), saliency,
embeddings and RankSVM's fc7 features all build on these functions; the
forward pass over many images always goes through `apply_in_batches`. A graph's `inputs` are images, or
what a run caches instead (`cached_views`): the backbone's features (its graph is then the ranking layer
alone), or the activations entering the last --train_blocks blocks.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from relrank.config import Config
from relrank.model.preprocess import normalize
from relrank.model.backbones import build_model, build_ranking_layer
from relrank.model.registry import trunk_blocks
from relrank.parallel.sharding import batch_sharding, replicated


@dataclasses.dataclass(frozen=True)
class ModelGraph:
    """The model's graph (no weights: parameters are passed to every function here) and the config it was built from."""

    graphdef: Any
    config: Config
    inputs: str = "images"  # INPUTS


INPUTS = ("images", "features", "activations")


@functools.lru_cache(maxsize=8)
def _abstract(config: Config, head_only: bool) -> tuple[Any, dict]:
    """(graph, parameter shapes) of `config`'s model, built abstractly once per config: building even an abstract
    ViT-B or VGG-16 takes a second or more, and a run asks for them several times."""
    build = build_ranking_layer if head_only else build_model
    graphdef, state = nnx.split(nnx.eval_shape(lambda: build(config)), nnx.Param)
    return graphdef, nnx.to_pure_dict(state)


def model_graph(config: Config, inputs: str = "images") -> ModelGraph:
    """The graph of `config`'s model (of its ranking layer alone on "features"), built abstractly."""
    assert inputs in INPUTS, inputs
    return ModelGraph(_abstract(config, inputs == "features")[0], config, inputs)


def random_params(config: Config) -> dict:
    """Freshly initialised parameters, a nested dict {layer: {'kernel', 'bias'}}."""
    return jax.jit(lambda: nnx.to_pure_dict(nnx.state(build_model(config), nnx.Param)))()


def random_head(config: Config) -> dict:
    """A freshly initialised ranking layer alone, {'head': {'kernel', 'bias'}}."""
    return jax.jit(lambda: nnx.to_pure_dict(nnx.state(build_ranking_layer(config), nnx.Param)))()


def param_shapes(config: Config) -> dict:
    """Shapes and dtypes of the parameters of `config`, without computing them (a tree of the caller's own)."""
    return jax.tree.map(lambda shape: shape, _abstract(config, False)[1])


def _model_and_input(network: ModelGraph, params, images: jax.Array):
    model = nnx.merge(network.graphdef, params)
    if network.inputs != "images":
        return model, images
    config = network.config
    return model, normalize(images, config.preprocessing, jnp.dtype(config.compute_dtype))


def scores(network: ModelGraph, params, images: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """r(image) for uint8 images [N, H, W, 3] (or the graph's cached inputs): [N, attributes] float32 (dropout
    only with a key)."""
    model, x = _model_and_input(network, params, images)
    if network.inputs == "activations":
        return model.rank(model.tail_features(x, trunk_blocks(network.config)), dropout_key=dropout_key)
    return model(x, dropout_key=dropout_key)


def features(network: ModelGraph, params, images: jax.Array) -> jax.Array:
    """The backbone's feature (fc7 for VGG) [N, D] of uint8 images [N, H, W, 3], float32, no dropout."""
    model, x = _model_and_input(network, params, images)
    return model.features(x).astype(jnp.float32)


def cached_views(network: ModelGraph, params, images: jax.Array) -> jax.Array:
    """What a run on cached inputs trains on, float32, for uint8 images [N, H, W, 3]: the backbone's features
    [N, D], or under --train_blocks the activations entering its last blocks [N, h, w, C]; with --flip, of the
    image and of its mirror image: [N, 2, ...]."""
    model, x = _model_and_input(network, params, images)
    cut = trunk_blocks(network.config)
    embed = (lambda v: model.trunk(v, cut)) if network.config.train_blocks else model.features
    if not network.config.flip:
        return embed(x).astype(jnp.float32)
    return jnp.stack([embed(v).astype(jnp.float32) for v in (x, x[:, :, ::-1])], axis=1)


def jit_apply(network: ModelGraph, mesh, output: Callable = scores) -> Callable[[Any, jax.Array], jax.Array]:
    """`output` (scores or features) compiled for `mesh`: images sharded over devices, params replicated."""
    return jax.jit(
        lambda params, images: output(network, params, images),
        in_shardings=(replicated(mesh), batch_sharding(mesh)),
        out_shardings=replicated(mesh),
    )


def padded_size(n: int, batch_images: int, multiple: int = 1) -> int:
    """The batch `n` images are scored in: the next power of two, rounded up to a multiple of the device count,
    at most `batch_images`. A few sizes, each compiled once, so scoring one image costs one image's forward pass."""
    size = -(-(1 << max(n - 1, 0).bit_length()) // multiple) * multiple
    return min(size, batch_images)


def apply_in_batches(apply: Callable[[np.ndarray], Any], images: np.ndarray, batch_images: int,
                     desc: str | None = "scoring", multiple: int = 1) -> np.ndarray:
    """`apply` over uint8 images [N, H, W, 3] in batches of `batch_images`, the last one padded to that size; fewer
    images than one batch are padded to `padded_size` only. One result row per image. `batch_images` and the
    padded sizes are multiples of `multiple` (the devices). A progress bar named `desc` (None: none) shows
    when there are several batches."""
    outputs = []
    for start in tqdm(range(0, len(images), batch_images), desc=desc, unit="batch", leave=False,
                      disable=desc is None or len(images) <= batch_images):
        chunk = images[start : start + batch_images]
        size = batch_images if len(images) > batch_images else padded_size(len(chunk), batch_images, multiple)
        padded = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        outputs.append(np.asarray(apply(padded))[: len(chunk)])
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
