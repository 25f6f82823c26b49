"""Named training recipes: `train.py --recipe=NAME`, one small module each (paper.py, scratch.py, demo.py, finetune.py,
partial.py, linear.py).

A recipe is a module with `get_config(dataset, pairs=None) -> dict` of Config
fields (and model-spec fields such as `block_widths` or `dropout`); the dataset's
name lets it set per-dataset values such as epochs, and `pairs` (a
`relrank.data.pairs.PairStructure`, None before the data is opened) lets it adapt to how
densely the training pairs cover the images. Fields it leaves out keep the
dataset's and the model preset's defaults; every command-line flag overrides it.
A path to a .py file defining `get_config(dataset)` or `get_config(dataset, pairs)`
works as well as a name. A recipe that adapts may also define `regime(dataset, pairs)
-> str`, the name of the settings it chose (printed before training).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os

from relrank.errors import UserError

RECIPES = {
    "paper": "the paper's protocol: ImageNet VGG-16 fine-tuned with RMSProp (1e-5 / 1e-4), 16 pairs per step",
    "scratch": "from random init on a CPU: vgg_cpu at 64 px, crops and flips, AdamW with warmup and cosine decay; "
               "its batches and rates follow how densely the pairs cover the images",
    "demo": "the quickstart: vgg16_small at 32 px from random init, RMSProp at 1e-3 with cosine decay",
    "finetune": "a pretrained backbone fine-tuned end to end on a CPU: EfficientNet-Lite0 (installed with relrank) at "
                "128 px, AdamW, the backbone at 1/10 of the ranking layer's rate",
    "partial": "a pretrained backbone's last blocks fine-tuned on a CPU: EfficientNet-Lite0 at 224 px, its first "
               "11 blocks frozen and their activations cached (with mirror images), the last 5 train (minutes)",
    "linear": "a linear ranker on a frozen pretrained backbone (--model, --weights): features computed once and "
              "cached, the ranking layer alone trains (seconds)",
}


def _module(name: str):
    if name.endswith(".py"):
        if not os.path.isfile(name):
            raise UserError(f"no recipe file {name}")
        spec = importlib.util.spec_from_file_location(f"relrank_recipe_{os.path.basename(name)[:-3]}", name)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as error:
            raise UserError(f"recipe {name} line {error.lineno}: {error.msg}") from None
        except Exception as error:  # the recipe's own code failed while it was imported
            raise UserError(f"recipe {name} fails when it is read: {type(error).__name__}: {error}") from None
        return module
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)} (or a path to a .py file)")
    return importlib.import_module(f"relrank.configs.{name}")  # paper.py, scratch.py, ...


def recipe_fields(name: str, dataset: str, pairs=None) -> dict:
    """The fields recipe `name` sets for `dataset` and its training pairs' structure `pairs` (if known)."""
    module = _module(name)
    if not hasattr(module, "get_config"):
        raise UserError(f"recipe {name!r} defines no get_config(dataset)")
    try:
        fields = module.get_config(dataset, pairs) if len(inspect.signature(module.get_config).parameters) > 1 \
            else module.get_config(dataset)
    except UserError:
        raise
    except Exception as error:
        raise UserError(f"recipe {name}: get_config failed: {type(error).__name__}: {error}") from None
    if not isinstance(fields, dict):
        raise UserError(f"recipe {name}: get_config must return a dict of Config fields, not {type(fields).__name__}")
    return fields


def recipe_regime(name: str, dataset: str, pairs) -> str:
    """The name of the settings recipe `name` chose for `pairs`, or '' for a recipe that does not adapt."""
    module = _module(name)
    return module.regime(dataset, pairs) if hasattr(module, "regime") else ""


def adapts(name: str) -> bool:
    """Whether recipe `name` adapts its settings to the training pairs (defines `regime`)."""
    return hasattr(_module(name), "regime")
