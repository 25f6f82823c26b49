"""The backbones `--model` picks from, and the network of a config: a backbone with its ranking layer.

VGG's topology comes from the config's spec (the vgg16, vgg16_small and vgg_cpu presets); the others
are the published networks with fixed sizes. Each backbone's `feature` is what its ranking layer reads.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from relrank.config import Config
from relrank.model.efficientnet_lite import LITE_SPECS, FEATURES as LITE_FEATURES, EfficientNetLite
from relrank.model.googlenet import GoogLeNet
from relrank.model.layers import RankingLayer
from relrank.model.resnet import ResNet50
from relrank.model.vgg import VGG
from relrank.model.vit import ViT, ViTSpec

VIT_SPECS = {
    "vit_s16": ViTSpec(width=384, heads=6, mlp=1536),
    "vit_b16": ViTSpec(),
    "dinov2_s14": ViTSpec(patch=14, width=384, heads=6, mlp=1536, native_size=518, layer_scale=True),
    "dinov2_b14": ViTSpec(patch=14, native_size=518, layer_scale=True),
    "clip_b16": ViTSpec(eps=1e-5, pre_norm=True, activation="quick_gelu"),
}


def vit_spec(config: Config) -> ViTSpec:
    return dataclasses.replace(VIT_SPECS[config.spec.architecture], pooling=config.spec.pooling)


def build_model(config: Config) -> nnx.Module:
    """A freshly initialised network for `config`, seeded by `config.seed` (weights are ported separately)."""
    spec = config.spec
    common = dict(rngs=nnx.Rngs(config.seed), dtype=jnp.dtype(config.compute_dtype), outputs=config.outputs)
    if spec.architecture == "vgg":
        return VGG(spec, config.image_size, **common)
    common.update(dropout=spec.dropout, zero_head=spec.zero_head)
    if spec.architecture == "resnet50":
        return ResNet50(**common)
    if spec.architecture == "googlenet":
        return GoogLeNet(**common)
    if spec.architecture in LITE_SPECS:
        return EfficientNetLite(LITE_SPECS[spec.architecture], **common)
    return ViT(vit_spec(config), **common)


def feature_width(config: Config) -> int:
    """The width of the feature the ranking layer reads."""
    architecture = config.spec.architecture
    if architecture == "vgg":
        return config.spec.fc_width
    if architecture in LITE_SPECS:
        return LITE_FEATURES
    return {"resnet50": 2048, "googlenet": 1024}.get(architecture) or VIT_SPECS[architecture].width


def build_ranking_layer(config: Config) -> RankingLayer:
    """The ranking layer of `config`'s network alone, on its feature: what trains on cached features.
    Its parameters are named as the whole network's head ({'head': ...})."""
    return RankingLayer(feature_width(config), config.outputs, config.spec.dropout, config.spec.zero_head,
                        nnx.Rngs(config.seed))
