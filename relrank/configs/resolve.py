"""A Config from its layers: Config's defaults < the dataset's < the model preset's < the recipe's < flags."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from relrank.config import Config, ModelSpec, check_types, validate
from relrank.configs.presets import MODEL_PRESETS
from relrank.configs.recipes import recipe_fields
from relrank.data.registry import DATASETS
from relrank.errors import UserError
from relrank.model import named_weights
from relrank.model.registry import BACKBONES, backbone, check_image_size, check_train_blocks

SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSpec))  # set as flags, they edit the preset's spec


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A Config and, for each of its fields (flattened: 'spec.dropout'), where its value came from:
    'default', 'dataset NAME', 'preset NAME', 'recipe NAME', 'flag' or 'weights file'."""

    config: Config
    sources: dict[str, str]


def resolve(flags: dict[str, Any], pairs=None) -> Resolved:
    """The Config that `flags` (field -> value; None or absent = unset) resolve to, and each value's source.

    `flags` may name `dataset` and `recipe` (a name in relrank/configs/ or a .py file; default: the
    dataset's); `pairs`, the training pairs' `relrank.data.pairs.PairStructure` when known, lets a
    recipe adapt to it. With `weights`, the preprocessing is the one that weights file expects.
    """
    flags = {k: v for k, v in flags.items() if v is not None}
    dataset = flags.get("dataset", Config.dataset)
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    recipe = flags.get("recipe") or default_recipe(dataset, flags)
    from_recipe = recipe_fields(recipe, dataset, pairs)
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(from_recipe) - fields - set(SPEC_FIELDS))
    if unknown:
        raise UserError(f"recipe {recipe!r} sets unknown field(s) {', '.join(unknown)}; valid fields: "
                        f"{', '.join(sorted(fields | set(SPEC_FIELDS)))}")
    unknown = sorted(set(flags) - fields - set(SPEC_FIELDS))
    if unknown:
        raise TypeError(f"unknown config fields: {unknown}")
    layers = [(f"dataset {dataset}", {"epochs": DATASETS[dataset].epochs, "recipe": recipe}),
              (f"recipe {recipe}", from_recipe), ("flag", flags)]
    chosen, sources = {}, {}
    for source, values in layers:
        chosen.update(values)
        sources.update({_flat(name): source for name in values})
    check_types(chosen, recipe)
    if chosen.get("weights") and named_weights.is_name(chosen["weights"]):
        _use_named_weights(chosen, sources)
    preset_name = chosen.get("model", Config.model)
    if preset_name not in MODEL_PRESETS:
        raise UserError(f"unknown model preset {preset_name!r}; valid presets: {', '.join(MODEL_PRESETS)}")
    preset = MODEL_PRESETS[preset_name]
    for whole in ("spec", "preprocessing"):  # given whole (by the library's callers): each of its fields
        if whole in sources:
            source = sources.pop(whole)
            sources.update({f"{whole}.{f.name}": source for f in dataclasses.fields(chosen[whole])})
    for name in ("image_size", *(f"spec.{f}" for f in SPEC_FIELDS)):  # what a preset sets
        sources.setdefault(name, f"preset {preset_name}")
    spec_edits = {k: tuple(v) if isinstance(v, list) else v for k, v in chosen.items() if k in SPEC_FIELDS}
    chosen = {**preset, **{k: v for k, v in chosen.items() if k not in SPEC_FIELDS}, "model": preset_name}
    chosen["spec"] = dataclasses.replace(chosen["spec"], **spec_edits)
    _check_spec_edits(preset_name, chosen["spec"], spec_edits)
    if chosen.get("weights") and "preprocessing" not in flags:
        from relrank.model.weights import preprocessing_of  # imports JAX: only when a weights file is given

        chosen["preprocessing"] = preprocessing_of(chosen["weights"], chosen["spec"].architecture)
        sources.update({f"preprocessing.{f.name}": "weights file"
                        for f in dataclasses.fields(chosen["preprocessing"])})
    if sources.get("image_size") == "flag" and sources.get("load_size", "").startswith("recipe") and \
            from_recipe.get("image_size"):  # a recipe's margin for crops follows a --image_size of the user's
        chosen["load_size"] = math.ceil(from_recipe["load_size"] * chosen["image_size"] / from_recipe["image_size"])
    config = Config(**chosen)
    validate(config)
    check_image_size(config)
    check_train_blocks(config)
    return Resolved(config, {name: sources.get(name, "default") for name in config.flat()})


def default_recipe(dataset: str, flags: dict[str, Any]) -> str:
    """The recipe without --recipe: the dataset's; but where that is the paper's (which needs ImageNet VGG-16
    weights) and the flags name neither --weights nor --model, `finetune` on the packaged EfficientNet-Lite0
    when it is installed (it comes with relrank)."""
    recipe = DATASETS[dataset].recipe
    if (recipe == "paper" and "weights" not in flags and "model" not in flags and flags.get("method", "deep") == "deep"
            and named_weights.installed("efficientnet_lite0")):
        return "finetune"
    return recipe


def _use_named_weights(chosen: dict[str, Any], sources: dict[str, str]) -> None:
    """--weights=NAME: the installed file, and the model preset it fits unless --model says another (an error)."""
    name, model = chosen["weights"], named_weights.model_of(chosen["weights"])
    if sources.get("model") == "flag" and chosen["model"] != model:
        raise UserError(f"--weights={name} are the weights of --model={model}, not of --model={chosen['model']}")
    chosen.update(weights=named_weights.locate(name), model=model)
    sources["model"] = sources["weights"]


def make_config(dataset: str = "synthetic", recipe: str | None = None, pairs=None, **overrides: Any) -> Config:
    """The Config of `dataset` with `recipe` (default: the dataset's) and `overrides` (None = unset); see `resolve`."""
    return resolve(dict(overrides, dataset=dataset, recipe=recipe), pairs).config


def _check_spec_edits(preset: str, spec: ModelSpec, edits: dict[str, Any]) -> None:
    """A one-line error for a topology setting the chosen network does not have (it would do nothing)."""
    mine = backbone(spec.architecture).spec_flags
    for name, value in edits.items():
        if name in ("dropout", "zero_head") or name in mine or (name == "pooling" and value == "token"):
            continue
        having = sorted(a for a, entry in BACKBONES.items() if name in entry.spec_flags)
        raise UserError(f"--{name} applies to {', '.join(having)} networks only; --model={preset} is "
                        f"{spec.architecture}")


def _flat(name: str) -> str:
    return f"spec.{name}" if name in SPEC_FIELDS else name
