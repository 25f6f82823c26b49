"""Learning from random init on a CPU, all attributes at once (`--attr=all`): the vgg_cpu network
(8 convolutions with GroupNorm) at 64 px; random resized crops (35-100% of a 72 px image), flips
and colour jitter; dropout 0.5 and a ranking layer that starts at zero; AdamW with a short warmup
and cosine decay.

Where every training image is compared with every other (OSR and PubFig: the orderings are per
category), steps take 32 random images with all their annotated pairs (up to 496 pairs for one
forward pass of 32 images). Tuned on PubFig with --val_fraction=0.2 (RESULTS.md, and the
comparison in the README); the other datasets keep their epochs and pair batches, untuned.
"""

ALL_PAIRS_EPOCHS = {"pubfig": 76, "osr": 76}  # ~4,500 steps of 32 images on PubFig's 241 training images


def get_config(dataset: str) -> dict:
    config = dict(model="vgg_cpu", image_size=64, load_size=72, crop_min_scale=0.35, flip=True, color_jitter=0.1,
                  dropout=0.5, zero_head=True, batch_pairs=32, optimizer="adamw", schedule="cosine",
                  warmup_fraction=0.05, backbone_lr=2e-3, head_lr=2e-3, weight_decay=0.05)
    if dataset in ALL_PAIRS_EPOCHS:
        config.update(batch_images=32, epochs=ALL_PAIRS_EPOCHS[dataset], eval_every_epochs=8)
    return config
