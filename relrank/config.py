"""Configuration as data: model presets, preprocessing and per-dataset defaults.

A `Config` fully describes a run. It is stored (as JSON) in every checkpoint, so
a workdir alone is enough to rebuild the model and preprocess images exactly as
training did.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from relrank.errors import UserError


CONV_LAYERS_PER_BLOCK = (2, 2, 3, 3, 3)  # VGG-16's
NORMS = ("none", "group")


def conv_layer_names(depths: tuple[int, ...] = CONV_LAYERS_PER_BLOCK) -> list[str]:
    """conv1_1 .. conv5_3 for VGG-16: the Caffe / Lasagne names weight porters address."""
    return [f"conv{block + 1}_{i + 1}" for block, n in enumerate(depths) for i in range(n)]


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the frozen dataclasses hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Topology of a VGG-style network: 5 blocks of 3x3 convolutions, each block ending in a 2x2 max-pool,
    then fc6 and fc7. The defaults are VGG-16 (13 convolutions, no normalisation); `norm='group'`
    puts a GroupNorm after every convolution."""

    block_widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    block_depths: tuple[int, ...] = CONV_LAYERS_PER_BLOCK
    fc_width: int = 4096
    dropout: float = 0.5
    norm: str = "none"
    zero_head: bool = False  # start the ranking layer at 0 (all scores equal) instead of Glorot-uniform

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelSpec":
        return cls(**_tuples(data))


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How uint8 RGB pixels become network input: x = (pixel * scale - mean) / std.

    `channel_order` is 'RGB' or 'BGR' (Caffe-derived weights expect BGR);
    `mean` and `std` are given in that channel order, after scaling.
    """

    channel_order: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Preprocessing":
        return cls(**_tuples(data))


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's network: ImageNet VGG-16 at 224x224.
    "vgg16": dict(spec=ModelSpec(), image_size=224),
    # Same topology at 1/8 width: for CPU tests, the demo and quick experiments.
    "vgg16_small": dict(spec=ModelSpec(block_widths=(8, 16, 32, 64, 64), fc_width=256), image_size=32),
    # For learning from scratch on CPUs: 8 convolutions with GroupNorm at 64x64 (about 0.4M parameters).
    "vgg_cpu": dict(spec=ModelSpec(block_widths=(16, 32, 64, 128, 128), block_depths=(1, 1, 2, 2, 2), fc_width=256,
                                   dropout=0.3, norm="group"), image_size=64),
}
SPEC_FLAGS = ("block_widths", "block_depths", "fc_width", "dropout", "norm", "zero_head")  # flags that edit the preset's spec


OPTIMIZERS = ("rmsprop", "adamw", "sgd")  # see relrank/optim.py
SCHEDULES = ("constant", "cosine", "linear")
INPUT_PIPELINES = ("auto", "memory", "streaming")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A `--dataset` name: the TFDS builder that prepares it, its protocol and its defaults.

    `epochs` is the paper's number of epochs for the dataset (recipes may set their own);
    `recipe` is the recipe used without --config. `train` and `test` name the builder's pair
    sets (they may contain {split}, UT-Zap50K-1's split number); UT-Zap50K-1 and -2 are two
    views of one builder. `builder_config` names a config of the builder (its size, say).
    """

    builder: str
    epochs: int
    recipe: str = "paper"
    builder_config: str = ""
    train: str = "train"
    test: str = "test"


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec("synthetic", 4, recipe="demo"),
    "synthetic_large": DatasetSpec("synthetic", 1, recipe="demo", builder_config="large"),
    "osr": DatasetSpec("osr", 2),
    "pubfig": DatasetSpec("pubfig", 2),
    "lfw10": DatasetSpec("lfw10", 40),
    "zappos1": DatasetSpec("zappos", 25, train="train_{split}", test="test_{split}"),
    "zappos2": DatasetSpec("zappos", 25, train="train_all", test="test_hard"),
    "pairs_csv": DatasetSpec("pairs_csv", 10),
    "placepulse": DatasetSpec("placepulse", 2),  # no paper protocol: 2 epochs over ~1M votes, as for OSR/PubFig
}


# Fields that say how a run is executed, stored or logged (or where its files lie), not what it learns:
# they may change when a run resumes and do not split seeds into different experiments.
HOW_RUN_FIELDS = ("recipe", "eval_batch_images", "input_pipeline", "data_workers", "checkpoint_every_steps",
                  "keep_checkpoints", "log_every_steps", "eval_every_epochs", "data_dir", "manual_dir")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run."""

    dataset: str = "synthetic"
    attr: str = ""  # one attribute, or several joined by commas (one ranking output each)
    recipe: str = ""
    model: str = "vgg16_small"
    image_size: int = 32
    epochs: int = 4
    batch_pairs: int = 16
    batch_images: int = 0  # >0: batches of this many images with every annotated pair among them
    eval_every_epochs: int = 1
    backbone_lr: float = 1e-3
    head_lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: str = "rmsprop"
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_fraction: float = 0.0
    crop_min_scale: float = 1.0
    flip: bool = False
    color_jitter: float = 0.0
    load_size: int = 0
    seed: int = 0
    weights: str = ""
    method: str = "deep"
    ranksvm_features: str = "dataset"
    ranksvm_c: float = 0.1
    compute_dtype: str = "float32"
    eval_batch_images: int = 128
    input_pipeline: str = "auto"  # memory: decode every image once into a table; streaming: grain workers read them
    data_workers: int = 0  # grain worker processes of the streaming pipeline (0: one per core but one, at most 8)
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    log_every_steps: int = 10
    data_dir: str = ""
    manual_dir: str = ""
    split: int = 1
    equal_pairs: bool = False
    unique_pairs: bool = False  # pairs_csv: refuse a pair annotated twice (default: every vote counts)
    test_pairs_fraction: float = 1.0
    val_fraction: float = 0.0
    data_identity: str = ""  # a hash of the dataset's attributes and pairs, set when training opens it
    spec: ModelSpec = ModelSpec()
    preprocessing: Preprocessing = Preprocessing()

    @property
    def attrs(self) -> tuple[str, ...]:
        """The attributes the run ranks, in the order of the network's outputs."""
        return tuple(a for a in self.attr.split(",") if a)

    @property
    def outputs(self) -> int:
        """The ranking outputs of the network: one per attribute (one before an attribute is chosen)."""
        return max(1, len(self.attrs))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Config":
        data = dict(data)
        spec, prep = ModelSpec.from_json(data.pop("spec")), Preprocessing.from_json(data.pop("preprocessing"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(spec=spec, preprocessing=prep, **{k: v for k, v in data.items() if k in known})

    def meaning(self) -> dict[str, Any]:
        """The fields that change what a run learns or how it is evaluated, flattened ('spec.dropout': 0.5):
        two runs whose meaning differs only in `seed` are seeds of one experiment. The weights file
        counts by its name (the same file may lie in another folder on another machine)."""
        flat: dict[str, Any] = {}
        for name, value in self.to_json().items():
            if name in HOW_RUN_FIELDS:
                continue
            if isinstance(value, dict):
                flat.update({f"{name}.{key}": item for key, item in value.items()})
            else:
                flat[name] = value
        flat["weights"] = os.path.basename(self.weights)
        return flat


def make_config(dataset: str = "synthetic", recipe: str | None = None, pairs=None, **overrides: Any) -> Config:
    """Build a Config: the dataset's epochs, the model preset, the recipe, then `overrides` (None = unset).

    `recipe` names a module of relrank/configs (default: the dataset's) or a .py file; `pairs`, the
    training pairs' `relrank.data.PairStructure` when known, lets the recipe adapt to it; fields
    of the model's spec (SPEC_FLAGS) edit the preset's. With `weights`, the preprocessing is
    the one that weights file expects.
    """
    from relrank.configs import recipe_fields

    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    recipe = recipe or DATASETS[dataset].recipe
    fields = {f.name for f in dataclasses.fields(Config)}
    from_recipe = recipe_fields(recipe, dataset, pairs)
    unknown = sorted(set(from_recipe) - fields - set(SPEC_FLAGS))
    if unknown:
        raise UserError(f"recipe {recipe!r} sets unknown field(s) {', '.join(unknown)}; valid fields: "
                        f"{', '.join(sorted(fields | set(SPEC_FLAGS)))}")
    values: dict[str, Any] = dict(dataset=dataset, recipe=recipe)
    values.update({k: v for k, v in overrides.items() if v is not None})
    chosen = {"epochs": DATASETS[dataset].epochs, **from_recipe, **values}
    _check_types(chosen, recipe)
    preset_name = chosen.get("model", Config.model)
    if preset_name not in MODEL_PRESETS:
        raise UserError(f"unknown model preset {preset_name!r}; valid presets: {', '.join(MODEL_PRESETS)}")
    preset = MODEL_PRESETS[preset_name]
    chosen = {**preset, **chosen, "model": preset_name}
    chosen["spec"] = _spec_with(chosen.pop("spec"), {k: chosen.pop(k) for k in SPEC_FLAGS if k in chosen})
    unknown = sorted(set(chosen) - fields)
    if unknown:
        raise TypeError(f"unknown config fields: {unknown}")
    if chosen.get("weights") and "preprocessing" not in values:
        from relrank.weights import preprocessing_of

        chosen["preprocessing"] = preprocessing_of(chosen["weights"])
    config = Config(**chosen)
    _validate(config)
    return config


def _check_types(values: dict[str, Any], recipe: str) -> None:
    """A one-line error naming a field whose value has the wrong type (a recipe's 'epochs': '3', say)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    defaults.update({f.name: f.default for f in dataclasses.fields(ModelSpec)})
    for name, value in values.items():
        default = defaults.get(name)
        if isinstance(default, (ModelSpec, Preprocessing)) or default is None:
            continue
        kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,), tuple: (tuple, list)}[type(default)]
        if not isinstance(value, kinds) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise UserError(f"field {name} is {value!r} (a {type(value).__name__}), expected "
                            f"{type(default).__name__}; check recipe {recipe!r} and the flags")


def _spec_with(spec: ModelSpec, edits: dict[str, Any]) -> ModelSpec:
    """The preset's spec with the fields a recipe or flag sets (lists become tuples)."""
    return dataclasses.replace(spec, **_tuples(edits))


def _validate(config: Config) -> None:
    spec = config.spec
    for name in ("block_widths", "block_depths"):
        value = getattr(spec, name)
        if len(value) != len(CONV_LAYERS_PER_BLOCK) or min(value) < 1:
            raise UserError(f"--{name} must be {len(CONV_LAYERS_PER_BLOCK)} integers >= 1 (one per block), got {value}")
    if spec.fc_width < 1:
        raise UserError(f"--fc_width must be at least 1, got {spec.fc_width}")
    if not 0 <= spec.dropout < 1:
        raise UserError(f"--dropout must be in [0, 1), got {spec.dropout}")
    if spec.norm not in NORMS:
        raise UserError(f"--norm must be one of {', '.join(NORMS)}, got {spec.norm!r}")
    if config.batch_images < 0 or config.batch_images == 1:
        raise UserError(f"--batch_images must be 0 (pair batches) or at least 2, got {config.batch_images}")
    if not 0 <= config.val_fraction <= 0.5:
        raise UserError(f"--val_fraction must be in (0, 0.5] (or 0 for no validation split), got {config.val_fraction}")
    if config.image_size % 32 or config.image_size < 32:
        raise UserError(f"--image_size must be a multiple of 32 (VGG-16 pools 5 times), got {config.image_size}")
    for name in ("epochs", "batch_pairs", "eval_batch_images", "checkpoint_every_steps", "keep_checkpoints",
                 "log_every_steps", "eval_every_epochs"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(config, name)}")
    if config.seed < 0:
        raise UserError(f"--seed must be >= 0, got {config.seed}")
    for name in ("backbone_lr", "head_lr", "weight_decay", "ranksvm_c"):
        value = getattr(config, name)
        if not math.isfinite(value) or value < 0:
            raise UserError(f"--{name} must be a finite number >= 0, got {value}")
    if config.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")
    if config.schedule not in SCHEDULES:
        raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {config.schedule!r}")
    if not 0 <= config.momentum < 1:
        raise UserError(f"--momentum must be in [0, 1), got {config.momentum}")
    if not 0 <= config.warmup_fraction < 1:
        raise UserError(f"--warmup_fraction must be in [0, 1), got {config.warmup_fraction}")
    if not 0 < config.crop_min_scale <= 1:
        raise UserError(f"--crop_min_scale must be in (0, 1], got {config.crop_min_scale}")
    if not 0 <= config.color_jitter < 1:
        raise UserError(f"--color_jitter must be in [0, 1), got {config.color_jitter}")
    if config.load_size and config.load_size < config.image_size:
        raise UserError(f"--load_size must be at least --image_size ({config.image_size}), got {config.load_size}")
    if config.method not in ("deep", "ranksvm"):
        raise UserError(f"--method must be deep or ranksvm, got {config.method!r}")
    if config.ranksvm_features not in ("dataset", "fc7"):
        raise UserError(f"--ranksvm_features must be dataset or fc7, got {config.ranksvm_features!r}")
    if not 0 < config.test_pairs_fraction <= 1:
        raise UserError(f"--test_pairs_fraction must be in (0, 1], got {config.test_pairs_fraction}")
    if config.input_pipeline not in INPUT_PIPELINES:
        raise UserError(f"--input_pipeline must be one of {', '.join(INPUT_PIPELINES)}, got {config.input_pipeline!r}")
    if config.data_workers < 0:
        raise UserError(f"--data_workers must be >= 0, got {config.data_workers}")
    if config.compute_dtype not in ("float32", "bfloat16"):
        raise UserError(f"--compute_dtype must be float32 or bfloat16, got {config.compute_dtype!r}")


def dumps(config: Config) -> str:
    return json.dumps(config.to_json(), indent=2, sort_keys=True)
