"""Learning from random init on a CPU, all attributes at once (`--attr=all`): the vgg_cpu network
(8 convolutions with GroupNorm) at 64 px; random resized crops (35-100% of a 72 px image), flips
and colour jitter; AdamW with a short warmup and cosine decay.

The rest follows the training pairs' structure (`relrank.data.pairs.PairStructure`), so that one
`--recipe=scratch` serves every dataset:
  all pairs (every image compared with every other: OSR, PubFig): steps of 32 random images with
    all their annotated pairs (up to 496 pairs for one forward pass of 32 images), dropout 0.5,
    ~4,500 steps; tuned on PubFig with --val_fraction=0.2.
  dense pairs (a group of 32 random images still holds more annotated pairs than 16 pairs would:
    small sets with many pairs per image, e.g. PubFig's images with 500 pairs per attribute):
    the same image groups, dropout 0.1, ~3,000 steps.
  sparse pairs (LFW-10, UT-Zap50K, most users' own pairs): steps of 32 pairs, each with its own
    two images, dropout 0.1, 20 epochs within 300..2,500 steps.
Dropout 0.5 on sparser pairs let the units after the convolutions stop firing for good (every
image then scores the same); the sparse settings were chosen on the validation beds of
benchmarks/sparse_pairs.py (--tuning), never on test pairs. Without the structure (a config
made before the data is opened), OSR and PubFig count as all pairs and the rest as sparse.
"""

from __future__ import annotations

import math

GROUP_IMAGES = 32
BATCH_PAIRS = 32  # of the sparse pairs' steps
GROUP_SLOTS = GROUP_IMAGES * (GROUP_IMAGES - 1) // 2
ALL_PAIRS_DATASETS = ("pubfig", "osr")
ALL_PAIRS_COVERAGE = 0.5  # an attribute annotates at least this fraction of the image pairs: "all pairs"
REGIMES = {  # name -> the fields it sets
    "all pairs": dict(batch_images=GROUP_IMAGES, dropout=0.5, backbone_lr=2e-3, head_lr=2e-3),
    "dense pairs": dict(batch_images=GROUP_IMAGES, dropout=0.1, backbone_lr=2e-3, head_lr=2e-3),
    "sparse pairs": dict(batch_images=0, dropout=0.1, backbone_lr=1e-3, head_lr=1e-3),
}
STEPS = {"all pairs": 4500, "dense pairs": 3000}  # per run, for image groups
SPARSE_EPOCHS, SPARSE_STEPS = 20, (300, 2500)
ALL_PAIRS_EPOCHS = 76  # ~4,500 steps of 32 images on PubFig's 241 training images (28,920 pairs)
EVALUATIONS = 9  # per run, about


def regime(dataset: str, pairs) -> str:
    """'all pairs', 'dense pairs' or 'sparse pairs' for `dataset` with training pairs of structure `pairs`."""
    if pairs is None:
        return "all pairs" if dataset in ALL_PAIRS_DATASETS else "sparse pairs"
    if pairs.attribute_coverage >= ALL_PAIRS_COVERAGE:
        return "all pairs"
    return "dense pairs" if (GROUP_IMAGES - 1) * pairs.coverage >= 1 else "sparse pairs"


def epochs(name: str, pairs) -> int | None:
    """The epochs of regime `name` on `pairs` (None: the dataset's, when the pairs are not known yet)."""
    if pairs is None:
        return ALL_PAIRS_EPOCHS if name == "all pairs" else None
    if name in STEPS:
        return max(1, round(STEPS[name] / math.ceil(pairs.rows / GROUP_SLOTS)))
    per_epoch = math.ceil(pairs.rows / BATCH_PAIRS)
    low, high = SPARSE_STEPS
    return max(1, round(min(max(SPARSE_EPOCHS * per_epoch, low), high) / per_epoch))


def group_images(batch_images: int, pairs) -> int:
    """`batch_images`, but never more than the images the training pairs hold (a small folder's)."""
    return batch_images if pairs is None or not batch_images else max(2, min(batch_images, pairs.images))


def get_config(dataset: str, pairs=None) -> dict:
    name = regime(dataset, pairs)
    config = dict(model="vgg_cpu", image_size=64, load_size=72, crop_min_scale=0.35, flip=True, color_jitter=0.1,
                  zero_head=True, batch_pairs=min(BATCH_PAIRS, pairs.rows) if pairs else BATCH_PAIRS,
                  optimizer="adamw", schedule="cosine", warmup_fraction=0.05, weight_decay=0.05, **REGIMES[name])
    config["batch_images"] = group_images(config["batch_images"], pairs)
    n = epochs(name, pairs)
    if n:
        config.update(epochs=n, eval_every_epochs=max(1, round(n / EVALUATIONS)))
    return config
