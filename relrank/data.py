"""Load a prepared dataset: its pair index and, once each, the images the pairs use."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import sys

import numpy as np
from tqdm.auto import tqdm

from relrank import prepared
from relrank.config import DATASETS
from relrank.errors import UserError
from relrank.images import to_uint8_rgb


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


class ImageRecords:
    """The prepared 'images' split's records, decoded as the TFDS source decodes them, without its DatasetInfo
    (which holds the pair index): small to send to each worker process of the streaming pipeline."""

    def __init__(self, source):
        self.records, self.features, self.decoders = source.data_source, source.dataset_info.features, source.decoders

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.features.deserialize_example_np(self.records[index], decoders=self.decoders)


@dataclasses.dataclass
class StoredImages:
    """A split's images read from the prepared dataset when asked for (row i is image ids[i]).

    `images[rows]` decodes those rows at size x size (what the streaming input pipeline reads in its
    workers); `load()` decodes them all into an in-memory table.
    """

    source: object
    ids: np.ndarray
    size: int
    name: str

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, rows) -> np.ndarray:
        return self._decode(self.ids[rows])

    def load(self, desc: str = "loading images") -> np.ndarray:
        """All the images: uint8 [len(ids), size, size, 3], with a progress bar (in process 0)."""
        from relrank.distributed import is_main

        return self._decode(tqdm(self.ids, desc=desc, unit="img", leave=False, disable=not is_main()))

    def _decode(self, ids) -> np.ndarray:
        out = np.empty((len(ids), self.size, self.size, 3), np.uint8)
        for k, index in enumerate(ids):
            example = self.source[int(index)]
            if int(example["index"]) != int(index):
                raise UserError(f"dataset {self.name!r} is out of order at image {index}; delete and rebuild it")
            out[k] = to_uint8_rgb(example["image"], self.size)  # encoded bytes: one decoder everywhere
        return out


@dataclasses.dataclass
class SplitImages:
    """One split's images (row i is dataset image ids[i]) and its pairs per attribute, indexing those rows.

    `images` is a uint8 table in memory, or a `StoredImages` that decodes rows when asked.
    """

    ids: np.ndarray
    images: np.ndarray | StoredImages
    pairs: dict[str, Pairs]


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


@dataclasses.dataclass
class RankingData:
    """A prepared dataset: attribute names, pair sets and random access to its images.

    `pairs('train', attr)` and `pairs('test', attr)` follow the dataset's
    protocol (its view of the builder's pair sets); other names give a raw set.
    """

    name: str
    attributes: list[str]
    pair_sets: dict[str, dict[str, Pairs]]
    source: object  # a TFDS data source over the 'images' split
    train_sets: tuple[str, ...] = ("train",)
    test_set: str = "test"
    test_pairs_fraction: float = 1.0
    metadata: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def identity(self) -> str:
        """A hash of the attribute names, every pair set and the number of images: runs on data with another
        identity are not the same experiment, and a run does not resume on it."""
        digest = hashlib.sha1(json.dumps([self.name, self.attributes, len(self.source)]).encode())
        for set_name in sorted(self.pair_sets):
            for attr in sorted(self.pair_sets[set_name]):
                pairs = self.pair_sets[set_name][attr]
                digest.update(f"{set_name}/{attr}".encode())
                for array in (pairs.a.astype(np.int64), pairs.b.astype(np.int64), pairs.target.astype(np.float32)):
                    digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:12]

    def pairs(self, split: str, attr: str) -> Pairs:
        check_attribute(self, attr)
        if split == "train":
            return Pairs.concatenate([self.pair_sets[s][attr] for s in self.train_sets])
        if split == "test":
            return self.pair_sets[self.test_set][attr].subset(self.test_pairs_fraction)
        if split not in self.pair_sets:
            raise UserError(f"dataset {self.name!r} has no pair set {split!r}; sets: {', '.join(self.pair_sets)}")
        return self.pair_sets[split][attr]

    def pairs_of(self, split: str, attrs: tuple[str, ...]) -> dict[str, Pairs]:
        """`split`'s pairs of each attribute (an error if one has none)."""
        pairs = {attr: self.pairs(split, attr) for attr in attrs}
        for attr, p in pairs.items():
            if not len(p):
                raise UserError(f"dataset {self.name!r} has no {split} pairs for attribute {attr!r}")
        return pairs

    def split_images(self, pairs: dict[str, Pairs], size: int, desc: str, in_memory: bool = True) -> SplitImages:
        """The images `pairs` use at size x size (decoded once into memory, or `StoredImages` read when used),
        and the pairs re-indexed into them."""
        ids, indexed = index_images(pairs)
        stored = StoredImages(ImageRecords(self.source), ids, size, self.name)
        return SplitImages(ids, stored.load(f"loading {desc} images") if in_memory else stored, indexed)

    def load_images(self, indices: np.ndarray, size: int, desc: str = "loading images") -> np.ndarray:
        """Decode the images at `indices`, resized to size x size: uint8 [len(indices), size, size, 3]."""
        return StoredImages(self.source, np.asarray(indices), size, self.name).load(desc)


def check_attribute(data: RankingData, attr: str) -> None:
    if attr not in data.attributes:
        raise UserError(
            f"dataset {data.name!r} has no attribute {attr!r}; valid attributes: {', '.join(data.attributes)}"
        )


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def load_dataset(
    name: str, data_dir: str = "", manual_dir: str = "", *, split: int = 1, equal_pairs: bool = False,
    test_pairs_fraction: float = 1.0, unique_pairs: bool = False,
) -> RankingData:
    """Prepare dataset `name` if needed (array_record files, no TensorFlow) and open it.

    Source files are read from `manual_dir` (default: <data_dir>/downloads/manual/<builder>).
    `split` picks one of UT-Zap50K-1's 10 splits; `equal_pairs` adds UT-Zap50K's tie
    pairs to training; `test_pairs_fraction` evaluates a seeded subset of the test pairs;
    `unique_pairs` makes pairs_csv refuse a pair annotated twice (default: every vote counts).
    """
    import tensorflow_datasets as tfds
    import relrank_datasets
    from relrank_datasets import pair_index
    from relrank_datasets.sources import SourceFilesError

    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    view = DATASETS[name]
    data_dir = data_dir or default_data_dir()
    manual_dir = manual_dir or os.path.join(data_dir, "downloads", "manual", view.builder)
    sources = prepared.fingerprint(manual_dir)  # the source files, read once for every check below
    kwargs = {}
    if view.builder == "pairs_csv":
        kwargs.update(config=_pairs_csv_config(manual_dir, data_dir, sources, unique_pairs), unique_pairs=unique_pairs)
    elif view.builder_config:
        kwargs["config"] = tfds.core.BuilderConfig(name=view.builder_config)
    builder_class = relrank_datasets.builder_class(view.builder)
    config_name = kwargs["config"].name if "config" in kwargs else ""
    dataset_dir = os.path.join(data_dir, builder_class.name, config_name)
    prepared_dir = os.path.join(dataset_dir, str(builder_class.VERSION))
    prepared.check_data_dir(data_dir)
    with prepared.one_at_a_time(data_dir, f"{builder_class.name}-{config_name or 'default'}"):
        prepared.remove_incomplete(dataset_dir)
        why = prepared.stale_reason(prepared_dir, manual_dir, sources)
        if why:
            print(f"dataset {name!r}: the prepared copy in {prepared_dir} is out of date: {why}; preparing it again",
                  file=sys.stderr)
            try:
                shutil.rmtree(prepared_dir)
            except OSError as error:
                raise UserError(f"cannot remove the out-of-date copy {prepared_dir} ({error.strerror}); remove it "
                                f"yourself, or give another --data_dir") from None
        try:
            builder = builder_class(data_dir=data_dir, file_format="array_record", **kwargs)
            fresh = not builder.is_prepared()
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
        except SourceFilesError as error:
            raise UserError(f"cannot prepare dataset {name!r}: {error}") from None
        if fresh or why:
            prepared.record(prepared_dir, sources)
    try:
        metadata = dict(builder.info.metadata)
        source = builder.as_data_source(split=pair_index.IMAGES_SPLIT, decoders={"image": tfds.decode.SkipDecoding()})
    except Exception as error:  # a prepared file damaged without a trace in its size or times
        raise UserError(f"the prepared copy of dataset {name!r} in {prepared_dir} cannot be read "
                        f"({type(error).__name__}: {str(error)[:200]}); delete that folder to prepare it again") from None
    if metadata.get("repeated_pairs"):
        print(f"{name}: {metadata['repeated_pairs']} pairs annotated more than once ({metadata['conflicting_pairs']} "
              f"with different answers): training uses every vote, a test pair counts once by majority (a draw is "
              f"skipped as a tie)", file=sys.stderr)
    pair_sets = {
        set_name: {attr: Pairs.from_json(p) for attr, p in by_attr.items()}
        for set_name, by_attr in metadata.pop("pair_sets").items()
    }
    train_sets = (view.train.format(split=split),) + (("train_equal",) if equal_pairs else ())
    test_set = view.test.format(split=split)
    required = {train_sets[0]: "--split", test_set: "--split", **({"train_equal": "--equal_pairs"} if equal_pairs else {})}
    for set_name, flag in required.items():
        if set_name not in pair_sets:
            raise UserError(f"dataset {name!r} has no pair set {set_name!r} (check {flag})")
    # Images come back as their encoded bytes (SkipDecoding), decoded by relrank.images like any other image.
    return RankingData(name, list(metadata.pop("attributes")), pair_sets, source, train_sets, test_set,
                       test_pairs_fraction, metadata)


def load_dataset_for(config, data_dir: str = "") -> RankingData:
    """The dataset of a run's Config, under that run's protocol options."""
    return load_dataset(
        config.dataset, data_dir or config.data_dir, config.manual_dir, split=config.split,
        equal_pairs=config.equal_pairs, test_pairs_fraction=config.test_pairs_fraction, unique_pairs=config.unique_pairs,
    )


def _pairs_csv_config(manual_dir: str, data_dir: str, sources: str, unique_pairs: bool):
    """A builder config per annotation folder *and content*: editing pairs.csv or images/ prepares anew.

    Copies prepared from an earlier content of the same folder are named and removed.
    """
    import re

    import tensorflow_datasets as tfds

    path = os.path.abspath(manual_dir)
    slug = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(path).lower()).strip("_") or "pairs"
    folder_id = f"{slug}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    name = f"{folder_id}_{sources[:10]}" + ("_unique" if unique_pairs else "")
    prepared_root = os.path.join(data_dir, "pairs_csv")
    stale = sorted(d for d in (os.listdir(prepared_root) if os.path.isdir(prepared_root) else [])
                   if (d == folder_id or d.startswith(folder_id + "_")) and d != name)
    if stale and not os.path.isdir(os.path.join(prepared_root, name)):
        print(f"{path}: pairs.csv or images/ changed since it was prepared; preparing it again", file=sys.stderr)
    for old in stale:
        shutil.rmtree(os.path.join(prepared_root, old), ignore_errors=True)
    return tfds.core.BuilderConfig(name=name)
