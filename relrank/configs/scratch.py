"""Learning from random init on a CPU, all attributes at once (`--attr=all`): the vgg_cpu network
(8 convolutions with GroupNorm) at 64 px; random resized crops (35-100% of a 72 px image), flips
and colour jitter; AdamW with a short warmup and cosine decay.

How a step is filled follows the training pairs' structure (`relrank.data.PairStructure`):
  dense pairs (a group of 32 random images holds more annotated pairs than 16 pairs would: OSR
    and PubFig, where every image is compared with every other, and small sets with many pairs
    per image): steps of 32 random images with all their annotated pairs (up to 496 pairs for
    one forward pass of 32 images); tuned on PubFig with --val_fraction=0.2.
  sparse pairs (LFW-10, UT-Zap50K, most users' own pairs): steps of 32 pairs, each with its own
    two images, at a lower peak rate and lighter dropout (at the dense settings these runs
    collapsed to constant scores); tuned on the sparse test beds' validation splits
    (benchmarks/sparse_pairs.py --tuning).
Both run about the same number of steps whatever the dataset's size (epochs follow from it).
Without the structure (a config made before the data is opened), OSR and PubFig count as dense.
"""

from __future__ import annotations

import math

GROUP_IMAGES = 32
DENSE_DATASETS = ("pubfig", "osr")  # every training image compared with every other
DENSE = dict(batch_images=GROUP_IMAGES, dropout=0.5, backbone_lr=2e-3, head_lr=2e-3, steps=4500)
SPARSE = dict(batch_pairs=32, dropout=0.1, backbone_lr=1e-3, head_lr=1e-3, steps=1500)
DENSE_EPOCHS = 76  # ~4,500 steps of 32 images on PubFig's 241 training images (28,920 pairs)
EVALUATIONS = 9  # per run, about


def dense(dataset: str, pairs) -> bool:
    """Whether image-group steps see more annotated pairs than pair steps of as many images would."""
    if pairs is None:
        return dataset in DENSE_DATASETS
    return (GROUP_IMAGES - 1) * pairs.coverage >= 1


def get_config(dataset: str, pairs=None) -> dict:
    regime = dict(DENSE if dense(dataset, pairs) else SPARSE)
    steps = regime.pop("steps")
    if pairs is None:
        epochs = DENSE_EPOCHS if regime.get("batch_images") else None
    else:
        per_step = GROUP_IMAGES * (GROUP_IMAGES - 1) // 2 if regime.get("batch_images") else regime["batch_pairs"]
        epochs = max(1, round(steps / math.ceil(pairs.rows / per_step)))
    config = dict(model="vgg_cpu", image_size=64, load_size=72, crop_min_scale=0.35, flip=True, color_jitter=0.1,
                  zero_head=True, optimizer="adamw", schedule="cosine", warmup_fraction=0.05, weight_decay=0.05,
                  **regime)
    if epochs:
        config.update(epochs=epochs, eval_every_epochs=max(1, round(epochs / EVALUATIONS)))
    return config
