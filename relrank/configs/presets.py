"""Model presets (`--model=NAME`): a network's topology and its input size, from the backbones' entries
(relrank/model/registry.py). Flags edit either."""

from __future__ import annotations

from typing import Any

from relrank.config import ModelSpec
from relrank.model.registry import BACKBONES


def _preset(architecture: str, fields: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in fields.items() if k != "image_size"}
    return dict(spec=ModelSpec(architecture=architecture, **spec), image_size=fields["image_size"])


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    name: _preset(architecture, fields) for architecture, entry in BACKBONES.items()
    for name, fields in entry.presets.items()}
# Presets whose full-size network is meant to start from pretrained weights (refused without them unless asked).
MEANT_FOR_WEIGHTS = tuple(name for entry in BACKBONES.values() for name in entry.meant_for_weights)
