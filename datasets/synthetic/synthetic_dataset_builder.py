"""Synthetic shapes with known attribute strengths: relrank's embedded default dataset.

Each image shows one star-shaped polygon on a noisy background. Three latent
strengths in [0, 1], drawn independently per image, set how bright, how large
and how pointy the shape is; position, rotation, number of points, hue and
background vary as nuisance. Pairs are annotated by comparing the latents:
nearly equal strengths give a tie (target 0.5), and a fraction of the training
annotations is flipped, like noisy crowd labels. Test annotations are the
noise-free ground truth. Everything derives from a fixed seed: no download.

The builder config `large` (`--dataset=synthetic_large`) draws 100,000 images and
1,000,002 pairs the same way: a dataset too big for memory tables at 224 px, for
trying the streaming input pipeline and measuring it.
"""

from __future__ import annotations

import colorsys

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from relrank_datasets import pair_index

ATTRIBUTES = ("brightness", "size", "pointiness")
IMAGE_SIZE = 64
SIZES = {  # builder config name -> (train images, test images, pairs per attribute per split)
    None: (1200, 300, {"train": 4000, "test": 3000}),
    "large": (90_000, 10_000, {"train": 320_000, "test": 13_334}),
}
TIE_THRESHOLD = 0.04
TRAIN_LABEL_NOISE = 0.05
SEED = 20161120


def draw_shape(strengths: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Render one image whose shape has the given (brightness, size, pointiness)."""
    brightness, size, pointiness = strengths
    background = rng.normal(0.35, 0.08, (IMAGE_SIZE, IMAGE_SIZE, 3)) * 255
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    outer = 8 + 20 * size
    inner = outer * (1.0 - 0.75 * pointiness)
    n_points = int(rng.integers(5, 9))
    margin = IMAGE_SIZE / 2 - outer - 1
    cx, cy = IMAGE_SIZE / 2 + rng.uniform(-margin, margin, 2)
    angles = rng.uniform(0, 2 * np.pi) + np.arange(2 * n_points) * np.pi / n_points
    radii = np.where(np.arange(2 * n_points) % 2 == 0, outer, inner)
    polygon = list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles)))
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), 0.6, 0.15 + 0.85 * brightness)
    ImageDraw.Draw(image).polygon(polygon, fill=(int(255 * r), int(255 * g), int(255 * b)))
    pixels = np.asarray(image, np.float32) + rng.normal(0, 6, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_annotations(strengths: np.ndarray, rng: np.random.Generator, size: str | None = None) -> dict:
    """Pairs per split and attribute; train images come first, then test images."""
    num_train, num_test, pairs_per_attribute = SIZES[size]
    groups = {"train": np.arange(num_train), "test": np.arange(num_train, num_train + num_test)}
    pair_sets = {}
    for split, images in groups.items():
        pair_sets[split] = {}
        for k, attr in enumerate(ATTRIBUTES):
            a, b = pair_index.sample_distinct_pairs(images, pairs_per_attribute[split], rng)
            diff = strengths[a, k] - strengths[b, k]
            target = np.where(np.abs(diff) < TIE_THRESHOLD, 0.5, (diff > 0).astype(np.float64))
            if split == "train":
                flip = (rng.uniform(size=len(target)) < TRAIN_LABEL_NOISE) & (target != 0.5)
                target = np.where(flip, 1.0 - target, target)
            pair_sets[split][attr] = pair_index.encode(a, b, target)
    return pair_sets


class Builder(tfds.core.GeneratorBasedBuilder):
    """Synthetic shapes ranked by brightness, size and pointiness."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=pair_index.image_features(IMAGE_SIZE, len(ATTRIBUTES)),
            metadata=pair_index.PairIndexMetadata(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        size = self.builder_config.name if self.builder_config else None
        rng = np.random.default_rng(SEED)
        n_images = SIZES[size][0] + SIZES[size][1]
        strengths = rng.uniform(size=(n_images, len(ATTRIBUTES)))
        self.info.metadata.update(
            attributes=list(ATTRIBUTES), pair_sets=make_annotations(strengths, rng, size)
        )
        return {pair_index.IMAGES_SPLIT: self._generate_examples(strengths, SEED + 1)}

    def _generate_examples(self, strengths: np.ndarray, seed: int):
        rng = np.random.default_rng(seed)
        for index, row in enumerate(strengths):
            yield index, {
                "image": draw_shape(row, rng),
                "index": index,
                "name": f"shape_{index:05d}",
                "strengths": row.astype(np.float32),
            }
