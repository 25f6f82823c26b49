"""Annotated pairs and how they are indexed, joined over attributes, described and held out."""

from __future__ import annotations

import dataclasses

import numpy as np

from relrank.errors import UserError


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Annotated pairs: image `a[i]` vs `b[i]`, target 1 (a more), 0 (a less) or 0.5 (tie)."""

    a: np.ndarray
    b: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    @classmethod
    def from_json(cls, data: dict) -> "Pairs":
        """Explicit pairs, or all combinations of images annotated by comparing their strengths."""
        if "all_pairs_of" in data:
            images, strengths = np.asarray(data["all_pairs_of"], np.int64), np.asarray(data["strengths"])
            i, j = np.triu_indices(len(images), 1)
            target = np.where(strengths[i] > strengths[j], 1.0, np.where(strengths[i] < strengths[j], 0.0, 0.5))
            return cls(images[i], images[j], target.astype(np.float32))
        return cls(
            np.asarray(data["a"], np.int64), np.asarray(data["b"], np.int64), np.asarray(data["target"], np.float32)
        )

    @classmethod
    def concatenate(cls, parts: list["Pairs"]) -> "Pairs":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("a", "b", "target")))

    def subset(self, fraction: float, seed: int = 0) -> "Pairs":
        """A seeded random `fraction` of the pairs (e.g. the paper's 5% of OSR's test pairs)."""
        if fraction >= 1.0:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), max(1, round(fraction * len(self))), replace=False))
        return Pairs(self.a[keep], self.b[keep], self.target[keep])

    def remap(self, rows: np.ndarray) -> "Pairs":
        """Replace image indices i by rows[i]."""
        return Pairs(rows[self.a], rows[self.b], self.target)

    def images(self) -> np.ndarray:
        return np.unique(np.concatenate([self.a, self.b]))


@dataclasses.dataclass(frozen=True)
class LabelledPairs:
    """Pairs annotated for several attributes at once: image `a[i]` vs `b[i]` has target[i, k] for
    attribute k where labelled[i, k], and no annotation of attribute k elsewhere (its loss is masked)."""

    a: np.ndarray
    b: np.ndarray
    target: np.ndarray  # [N, attributes] float32
    labelled: np.ndarray  # [N, attributes] bool

    def __len__(self) -> int:
        return len(self.a)

    @classmethod
    def join(cls, per_attribute: list[Pairs]) -> "LabelledPairs":
        """One row per pair of images annotated by any attribute, in order of first appearance.

        A pair annotated for several attributes (in either order of its images) becomes one row;
        an attribute that annotates the same pair twice keeps two rows. One attribute gives its
        pairs back unchanged.
        """
        a = np.concatenate([p.a for p in per_attribute]).astype(np.int64)
        b = np.concatenate([p.b for p in per_attribute]).astype(np.int64)
        target = np.concatenate([p.target for p in per_attribute]).astype(np.float32)
        attr = np.concatenate([np.full(len(p), k) for k, p in enumerate(per_attribute)])
        if not len(a):
            return cls(a, b, np.zeros((0, len(per_attribute)), np.float32), np.zeros((0, len(per_attribute)), bool))
        key = np.minimum(a, b) * (int(max(a.max(), b.max())) + 1) + np.maximum(a, b)
        # The how-manieth annotation of this pair by this attribute: repeats stay separate rows.
        order = np.lexsort((np.arange(len(a)), key, attr))
        new_group = np.r_[True, (np.diff(key[order]) != 0) | (np.diff(attr[order]) != 0)]
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(a)), 0))
        occurrence = np.empty(len(a), np.int64)
        occurrence[order] = np.arange(len(a)) - group_start
        _, first, inverse = np.unique(key * (occurrence.max() + 1) + occurrence, return_index=True,
                                      return_inverse=True)
        row_of_unique = np.empty(len(first), np.int64)
        row_of_unique[np.argsort(first)] = np.arange(len(first))
        row = row_of_unique[inverse.ravel()]
        firsts = np.sort(first)
        row_a, row_b = a[firsts], b[firsts]
        oriented = np.where(a == row_a[row], target, 1.0 - target)  # as the row orders its two images
        joined_target = np.zeros((len(firsts), len(per_attribute)), np.float32)
        labelled = np.zeros((len(firsts), len(per_attribute)), bool)
        joined_target[row, attr] = oriented
        labelled[row, attr] = True
        return cls(row_a, row_b, joined_target, labelled)


@dataclasses.dataclass(frozen=True)
class PairStructure:
    """How densely a run's training pairs cover its images: what the scratch recipe adapts to.

    `rows`: the image pairs annotated for any attribute (a training step draws these);
    `coverage`: their fraction of all image pairs; `attribute_coverage`: the fraction of all image
    pairs an attribute annotates, on average: 1 where every image is compared with every other
    (OSR and PubFig), well under 1% for LFW-10, UT-Zap50K and most users' own pairs.
    """

    images: int
    pairs_per_attribute: float
    rows: int
    tie_share: float

    @classmethod
    def of(cls, pairs: dict[str, Pairs]) -> "PairStructure":
        a = np.concatenate([p.a for p in pairs.values()]).astype(np.int64)
        b = np.concatenate([p.b for p in pairs.values()]).astype(np.int64)
        target = np.concatenate([p.target for p in pairs.values()])
        images = np.unique(np.concatenate([a, b]))
        rows = len(np.unique(np.minimum(a, b) * (int(images[-1]) + 1) + np.maximum(a, b))) if len(a) else 0
        return cls(len(images), len(a) / max(len(pairs), 1), rows, float(np.mean(target == 0.5)) if len(a) else 0.0)

    @property
    def coverage(self) -> float:
        return self.rows / max(self.images * (self.images - 1) / 2, 1)

    @property
    def attribute_coverage(self) -> float:
        return min(1.0, self.pairs_per_attribute / max(self.images * (self.images - 1) / 2, 1))

    def describe(self) -> str:
        return (f"{self.pairs_per_attribute:,.0f} training pairs per attribute among {self.images:,} images "
                f"({100 * self.attribute_coverage:.3g}% of the image pairs), {100 * self.tie_share:.0f}% of them ties")


def index_images(pairs: dict) -> tuple[np.ndarray, dict]:
    """The ids of the images the pairs (a dict, keyed by anything) use, and the dict with its pairs re-indexed
    into rows of that list."""
    ids = np.unique(np.concatenate([p.images() for p in pairs.values()]))
    rows = np.full(int(ids.max()) + 1, -1, np.int64)
    rows[ids] = np.arange(len(ids))
    return ids, {attr: p.remap(rows) for attr, p in pairs.items()}


def hold_out(pairs: dict[str, Pairs], fraction: float, seed: int) -> tuple[dict[str, Pairs], dict[str, Pairs]]:
    """(training, validation) pairs: a seeded `fraction` of the images is held out with all its pairs.

    Validation keeps the pairs of two held-out images; pairs of a held-out image with a kept one
    are dropped, so no validation image is ever seen in training.
    """
    images = np.unique(np.concatenate([p.images() for p in pairs.values()]))
    held = np.random.default_rng([seed, 7]).choice(images, max(1, round(fraction * len(images))), replace=False)
    train, val = {}, {}
    for attr, p in pairs.items():
        in_a, in_b = np.isin(p.a, held), np.isin(p.b, held)
        train[attr] = Pairs(p.a[~in_a & ~in_b], p.b[~in_a & ~in_b], p.target[~in_a & ~in_b])
        val[attr] = Pairs(p.a[in_a & in_b], p.b[in_a & in_b], p.target[in_a & in_b])
        for name, kept in (("training", train[attr]), ("validation", val[attr])):
            if not len(kept):
                raise UserError(f"--val_fraction={fraction} leaves attribute {attr!r} no {name} pairs "
                                f"({len(held)} of {len(images)} images held out); choose another fraction")
    return train, val
