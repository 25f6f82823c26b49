"""Fine-tune a pretrained backbone end to end on a CPU (the paper's way, at a CPU's size): the packaged
EfficientNet-Lite0 ImageNet weights (--weights=efficientnet_lite0, installed with relrank) at 128 px; random
resized crops (70-100%) and flips; AdamW with the backbone at 3e-4 and the ranking layer at 3e-3, a short
warmup and cosine decay; about 220 steps of 32 images (about 8 minutes on 2 CPU cores). Batches follow the
training pairs' structure as --recipe=scratch's regimes do: groups of 32 images with all their pairs where
pairs are dense, 16 pairs each with its own two images (the paper's batch) where sparse.

Chosen on validation beds only: faces of people held out whole (benchmarks/sparse_pairs.py pubfig --tuning
--held_out_people=2, 500 pairs per attribute, 40% ties), where fine-tuning beat the linear ranker on frozen
features by 5-7 points and the rates 3e-4 / 3e-3 beat 1e-4 / 1e-3 and 3e-5 / 1e-3 (81.30, 79.98, 79.08); and
PubFig with --val_fraction=0.2 (94.30 at 1e-4 / 1e-3; linear: 82.69).
"""

from __future__ import annotations

import math

from relrank.configs import scratch

IMAGE_SIZE = 128
STEPS = 220  # of 32 images: groups of 32 images with their pairs, or 16 pairs each with its own two images
SPARSE_BATCH_PAIRS = 16  # the paper's batch
EVALUATIONS = 3


def regime(dataset: str, pairs, steps: int = STEPS) -> str:
    name = scratch.regime(dataset, pairs)
    return f"{name} (~{steps * (2 if name == 'sparse pairs' else 1)} steps of 32 images)"


def get_config(dataset: str, pairs=None, steps: int = STEPS) -> dict:
    name = scratch.regime(dataset, pairs)
    groups = name != "sparse pairs"
    config = dict(weights="efficientnet_lite0", image_size=IMAGE_SIZE, load_size=round(IMAGE_SIZE * 1.1),
                  crop_min_scale=0.7, flip=True, color_jitter=0.0, dropout=0.2, zero_head=True,
                  batch_images=scratch.group_images(scratch.GROUP_IMAGES, pairs) if groups else 0,
                  batch_pairs=min(SPARSE_BATCH_PAIRS, pairs.rows) if pairs else SPARSE_BATCH_PAIRS,
                  optimizer="adamw", schedule="cosine", warmup_fraction=0.05, weight_decay=1e-4,
                  backbone_lr=3e-4, head_lr=3e-3)
    if pairs is not None:
        per_epoch = math.ceil(pairs.rows / (scratch.GROUP_SLOTS if groups else SPARSE_BATCH_PAIRS))
        epochs = max(1, round((steps if groups else 2 * steps) / per_epoch))
        config.update(epochs=epochs, eval_every_epochs=max(1, round(epochs / EVALUATIONS)))
    return config
