"""A linear ranker on frozen features, the first thing to try with a pretrained backbone (--model and
--weights; e.g. --model=dinov2_s14 --weights=FOLDER): the backbone is frozen (--backbone_lr=0), each
image's feature is computed once without augmentation and cached on disk, and the ranking layer alone
trains on the cached features: RankNet, AdamW at 1e-3 with cosine decay, 256 pairs per step, about
1,000 steps whatever the number of pairs (seconds on a CPU once the features are cached)."""

from __future__ import annotations

import math

BATCH_PAIRS = 256
STEPS = 1000


def regime(dataset: str, pairs) -> str:
    del dataset, pairs
    return f"frozen-backbone (~{STEPS} steps of the ranking layer on cached features)"


def get_config(dataset: str, pairs=None) -> dict:
    del dataset
    config = dict(backbone_lr=0.0, head_lr=1e-3, optimizer="adamw", weight_decay=1e-4, schedule="cosine",
                  warmup_fraction=0.0, crop_min_scale=1.0, flip=False, color_jitter=0.0, load_size=0, dropout=0.0,
                  zero_head=True, batch_images=0, batch_pairs=min(BATCH_PAIRS, pairs.rows) if pairs else BATCH_PAIRS)
    if pairs is not None:
        epochs = max(1, round(STEPS / math.ceil(pairs.rows / config["batch_pairs"])))
        config.update(epochs=epochs, eval_every_epochs=max(1, epochs // 4))
    return config
