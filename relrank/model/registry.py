"""The backbones `--model` picks from: one `Backbone` entry per architecture, declared once here: its network,
feature width, presets, input-size rule, and weight layouts with their port and preprocessing.

Adding a backbone is a file with its network and port (relrank/model/<family>.py) and its entry here. The
entries are data, importable without JAX: the network and port functions import their family when called.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from relrank.config import CLIP, HALF, IMAGENET, LITE, Config, Preprocessing
from relrank.errors import UserError


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One architecture.
    `build(config, common)`: the network, randomly initialised; `common` holds rngs, dtype, outputs, dropout and
    zero_head. `feature_width`: the width of the feature its ranking layer reads (or a function of the config).
    `presets`: the `--model` names it provides -> the fields each sets (image_size, ModelSpec fields).
    `meant_for_weights`: those refused without --weights (from random init on a CPU they run for days).
    `port(tensors, source)`: (backbone params, the file's layout) from a state dict of numpy arrays; None where
    relrank/model/weights.py reads the files itself (VGG's torchvision, timm and Lasagne layouts).
    `preprocessing`: each layout's preprocessing, used where the file does not say its own.
    `size_multiple`, `size_reason`: what --image_size must be a multiple of, and why.
    `spec_flags`: the ModelSpec fields besides dropout and zero_head that mean something to it.
    `blocks`: how many blocks its trunk is a run of, of which --train_blocks may train the last alone (0: none)."""

    build: Callable[[Config, dict], Any]
    feature_width: int | Callable[[Config], int]
    presets: dict[str, dict[str, Any]]
    meant_for_weights: tuple[str, ...] = ()
    port: Callable[[dict, str], tuple[dict, str]] | None = None
    preprocessing: dict[str, Preprocessing] = dataclasses.field(default_factory=dict)
    size_multiple: int = 1
    size_reason: str = ""
    spec_flags: tuple[str, ...] = ()
    blocks: int = 0


def _pretrained(image_size: int = 224) -> dict[str, Any]:
    """A preset of a network meant for its pretrained weights: no dropout by default."""
    return dict(image_size=image_size, dropout=0.0)


def _vgg(config: Config, common: dict):
    from relrank.model.vgg import VGG

    return VGG(config.spec, config.image_size, rngs=common["rngs"], dtype=common["dtype"], outputs=common["outputs"])


def _googlenet(config: Config, common: dict):
    from relrank.model.googlenet import GoogLeNet

    return GoogLeNet(**common)


def _port_googlenet(tensors: dict, source: str) -> tuple[dict, str]:
    from relrank.model.googlenet import from_torchvision

    return from_torchvision(tensors), "torchvision"


def _resnet50(config: Config, common: dict):
    from relrank.model.resnet import ResNet50

    return ResNet50(**common)


def _port_resnet50(tensors: dict, source: str) -> tuple[dict, str]:
    from relrank.model.resnet import from_torchvision

    return from_torchvision(tensors), "torchvision"


def _vit(config: Config, common: dict):
    from relrank.model.vit import VIT_SPECS, ViT

    return ViT(dataclasses.replace(VIT_SPECS[config.spec.architecture], pooling=config.spec.pooling), **common)


def _vit_entry(name: str, width: int, patch: int, layouts: dict[str, Preprocessing]) -> Backbone:
    def port(tensors: dict, source: str) -> tuple[dict, str]:
        from relrank.model.vit import VIT_SPECS
        from relrank.model.vit_ports import port_vit

        return port_vit(tensors, VIT_SPECS[name], source)

    return Backbone(build=_vit, feature_width=width, presets={name: _pretrained()}, meant_for_weights=(name,),
                    port=port, preprocessing=layouts, size_multiple=patch, size_reason=f"its patches are {patch} px",
                    spec_flags=("pooling",))


def _lite(config: Config, common: dict):
    from relrank.model.efficientnet_lite import LITE_SPECS, EfficientNetLite

    return EfficientNetLite(LITE_SPECS[config.spec.architecture], **common)


def _lite_entry(name: str, native_size: int, blocks: int) -> Backbone:
    def port(tensors: dict, source: str) -> tuple[dict, str]:
        from relrank.model.efficientnet_lite import LITE_SPECS, from_pytorch

        return from_pytorch(tensors, LITE_SPECS[name]), "efficientnet-lite-pytorch"

    return Backbone(build=_lite, feature_width=1280, presets={name: _pretrained(native_size)},
                    meant_for_weights=(name,), port=port, preprocessing={"efficientnet-lite-pytorch": LITE},
                    blocks=blocks)


VIT_LAYOUTS = {"timm": HALF, "hf": HALF, "torchvision": IMAGENET}
DINOV2_LAYOUTS = {"timm": IMAGENET, "hf": IMAGENET}
BACKBONES: dict[str, Backbone] = {  # by ModelSpec.architecture
    "vgg": Backbone(
        build=_vgg, feature_width=lambda config: config.spec.fc_width,
        presets={
            # The paper's network: ImageNet VGG-16 at 224x224.
            "vgg16": dict(image_size=224),
            # Same topology at 1/8 width: for CPU tests, the demo and quick experiments.
            "vgg16_small": dict(block_widths=(8, 16, 32, 64, 64), fc_width=256, image_size=32),
            # For learning from scratch on CPUs: 8 convolutions with GroupNorm at 64x64 (about 0.4M parameters).
            "vgg_cpu": dict(block_widths=(16, 32, 64, 128, 128), block_depths=(1, 1, 2, 2, 2), fc_width=256,
                            dropout=0.3, norm="group", image_size=64),
        },
        meant_for_weights=("vgg16",), size_multiple=32, size_reason="VGG's fc6 takes the image halved 5 times",
        spec_flags=("block_widths", "block_depths", "fc_width", "norm")),
    "googlenet": Backbone(build=_googlenet, feature_width=1024, presets={"googlenet": _pretrained()},
                          meant_for_weights=("googlenet",), port=_port_googlenet, preprocessing={"torchvision": HALF}),
    "resnet50": Backbone(build=_resnet50, feature_width=2048, presets={"resnet50": _pretrained()},
                         meant_for_weights=("resnet50",), port=_port_resnet50,
                         preprocessing={"torchvision": IMAGENET}),
    "vit_s16": _vit_entry("vit_s16", 384, 16, VIT_LAYOUTS),
    "vit_b16": _vit_entry("vit_b16", 768, 16, VIT_LAYOUTS),
    "dinov2_s14": _vit_entry("dinov2_s14", 384, 14, DINOV2_LAYOUTS),
    "dinov2_b14": _vit_entry("dinov2_b14", 768, 14, DINOV2_LAYOUTS),
    "clip_b16": _vit_entry("clip_b16", 768, 16, {"hf_clip": CLIP, "openai_clip": CLIP}),
    "efficientnet_lite0": _lite_entry("efficientnet_lite0", 224, 16),
    "efficientnet_lite1": _lite_entry("efficientnet_lite1", 240, 21),
    "efficientnet_lite2": _lite_entry("efficientnet_lite2", 260, 21),
}


def backbone(architecture: str) -> Backbone:
    """The entry of `architecture`; a one-line error for one relrank does not know (a config from elsewhere)."""
    if architecture not in BACKBONES:
        raise UserError(f"unknown backbone architecture {architecture!r}; relrank knows {', '.join(BACKBONES)}")
    return BACKBONES[architecture]


def feature_width(config: Config) -> int:
    """The width of the feature the ranking layer reads."""
    width = backbone(config.spec.architecture).feature_width
    return width(config) if callable(width) else width


def check_image_size(config: Config) -> None:
    """A one-line error for an --image_size the network cannot take."""
    entry = backbone(config.spec.architecture)
    multiple = entry.size_multiple
    if config.image_size % multiple or config.image_size < 32:
        need = f"a multiple of {multiple} and at least 32" if multiple > 1 else "at least 32"
        why = f" ({entry.size_reason})" if entry.size_reason else ""
        raise UserError(f"--image_size must be {need} for --model={config.model}{why}, got {config.image_size}")


def trunk_blocks(config: Config) -> int:
    """How many of the backbone's blocks stay frozen under --train_blocks (the activations after them are cached)."""
    return backbone(config.spec.architecture).blocks - config.train_blocks


def check_train_blocks(config: Config) -> None:
    """A one-line error for a --train_blocks the run cannot honour."""
    if not config.train_blocks:
        return
    blocks = backbone(config.spec.architecture).blocks
    if not blocks:
        have = ", ".join(name for name, entry in BACKBONES.items() if entry.blocks)
        raise UserError(f"--train_blocks works with {have}, not --model={config.model}")
    if config.train_blocks > blocks:
        raise UserError(f"--train_blocks={config.train_blocks} is more than the {blocks} blocks of {config.model}")
    if config.backbone_lr == 0:
        raise UserError("--train_blocks trains blocks at --backbone_lr, which is 0 (a frozen backbone): give a "
                        "rate, or --train_blocks=0 to train the ranking layer alone")
    if config.crop_min_scale < 1 or config.color_jitter or config.load_size not in (0, config.image_size):
        raise UserError("--train_blocks trains on activations computed once per image, which cannot be cropped or "
                        "colour-jittered: give --crop_min_scale=1 --color_jitter=0 --load_size=0 (flips are cached)")
