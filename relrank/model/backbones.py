"""The network of a config: its backbone (relrank/model/registry.py's entry) with its ranking layer."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from relrank.config import Config
from relrank.model.layers import RankingLayer
from relrank.model.registry import backbone, feature_width


def build_model(config: Config) -> nnx.Module:
    """A freshly initialised network for `config`, seeded by `config.seed` (weights are ported separately)."""
    common = dict(rngs=nnx.Rngs(config.seed), dtype=jnp.dtype(config.compute_dtype), outputs=config.outputs,
                  dropout=config.spec.dropout, zero_head=config.spec.zero_head)
    return backbone(config.spec.architecture).build(config, common)


def build_ranking_layer(config: Config) -> RankingLayer:
    """The ranking layer of `config`'s network alone, on its feature: what trains on cached features.
    Its parameters are named as the whole network's head ({'head': ...})."""
    return RankingLayer(feature_width(config), config.outputs, config.spec.dropout, config.spec.zero_head,
                        nnx.Rngs(config.seed))
