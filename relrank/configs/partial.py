"""Fine-tune a pretrained backbone's last blocks on a CPU: the packaged EfficientNet-Lite0 ImageNet weights at
their own 224 px; its first 11 of 16 blocks stay frozen, and their output activations are computed once per
image and per mirror image and cached (--train_blocks=5); its last 5 blocks (its last two stages, at 1/16 and
1/32 of the input), its 1x1 head convolution and the ranking layer train on them: AdamW, the blocks at 3e-4
and the ranking layer at 3e-3, a short warmup and cosine decay, about 440 steps of 32 images. No crops (the
trunk's activations are cached): flips only. Batches follow the training pairs' structure as
--recipe=finetune's do.

Measured on the validation bed of faces of people held out whole (benchmarks/sparse_pairs.py pubfig --tuning
--held_out_people=2, 500 pairs per attribute): 79.48 (5 blocks at 224 px), 80.02 (8 blocks, about twice the
time), 77.92 (5 blocks at 128 px, 83 s), 77.49 (1 block); --recipe=finetune 81.30, --recipe=linear 74.50. So
`finetune` stays the default; `partial` is for more images than `finetune`'s steps can see, or less time.
"""

from __future__ import annotations

from relrank.configs import finetune

IMAGE_SIZE = 224
TRAIN_BLOCKS = 5
STEPS = 440


def regime(dataset: str, pairs) -> str:
    return finetune.regime(dataset, pairs, STEPS)


def get_config(dataset: str, pairs=None) -> dict:
    config = finetune.get_config(dataset, pairs, STEPS)
    config.update(image_size=IMAGE_SIZE, load_size=0, crop_min_scale=1.0, train_blocks=TRAIN_BLOCKS)
    return config
