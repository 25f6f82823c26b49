"""Open a prepared dataset (preparing it first if needed): its pair sets and, once each, the images they use."""

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

from relrank.data import prepared
from relrank.data.images import to_uint8_rgb
from relrank.data.pairs import Pairs, index_images
from relrank.data.registry import DATASETS
from relrank.errors import UserError


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
        from relrank.parallel.distributed import is_main

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
                hint = ""
                if self.name == "pairs_csv" and split == "test":
                    hint = ("; without a split column a seeded 20% of the images are held out and only pairs of two "
                            "held-out images test, so a few dozen answers leave none: annotate more pairs, or give "
                            "pairs.csv a split column")
                raise UserError(f"dataset {self.name!r} has no {split} pairs for attribute {attr!r}{hint}")
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
    name: str, data_dir: str = "", manual_dir: str = "", *, zappos_split: int = 1, equal_pairs: bool = False,
    test_pairs_fraction: float = 1.0, unique_pairs: bool = False,
) -> RankingData:
    """Prepare dataset `name` if needed (array_record files, no TensorFlow) and open it.

    Source files are read from `manual_dir` (default: <data_dir>/downloads/manual/<builder>).
    `zappos_split` picks one of UT-Zap50K-1's 10 splits; `equal_pairs` adds UT-Zap50K's tie
    pairs to training; `test_pairs_fraction` evaluates a seeded subset of the test pairs;
    `unique_pairs` makes pairs_csv refuse a pair annotated twice (default: every vote counts).
    """
    import tensorflow_datasets as tfds
    from relrank_datasets import pair_index

    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    view = DATASETS[name]
    builder, prepared_dir = _prepare(name, data_dir or default_data_dir(), manual_dir, unique_pairs)
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
    train_sets = (view.train.format(split=zappos_split),) + (("train_equal",) if equal_pairs else ())
    test_set = view.test.format(split=zappos_split)
    required = {train_sets[0]: "--zappos_split", test_set: "--zappos_split",
                **({"train_equal": "--equal_pairs"} if equal_pairs else {})}
    for set_name, flag in required.items():
        if set_name not in pair_sets:
            raise UserError(f"dataset {name!r} has no pair set {set_name!r} (check {flag})")
    # Images come back as their encoded bytes (SkipDecoding), decoded by relrank.data.images like any other image.
    return RankingData(name, list(metadata.pop("attributes")), pair_sets, source, train_sets, test_set,
                       test_pairs_fraction, metadata)


def _prepare(name: str, data_dir: str, manual_dir: str, unique_pairs: bool):
    """(the dataset's TFDS builder, its prepared folder): prepared once per content of its source folder, one
    preparation at a time per data dir; a copy whose sources or files changed is prepared again."""
    import tensorflow_datasets as tfds
    import relrank_datasets
    from relrank_datasets.pairs_csv import pairs_csv_dataset_builder as pairs_csv_builder
    from relrank_datasets.sources import SourceFilesError

    view = DATASETS[name]
    manual_dir = manual_dir or os.path.join(data_dir, "downloads", "manual", view.builder)
    sources = prepared.fingerprint(manual_dir)  # the source files, read once for every check below
    kwargs = {}
    if view.builder == "pairs_csv":
        kwargs.update(config=pairs_csv_builder.builder_config(manual_dir, data_dir, sources, unique_pairs),
                      unique_pairs=unique_pairs)
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
    return builder, prepared_dir


def load_dataset_for(config, data_dir: str = "") -> RankingData:
    """The dataset of a run's Config, under that run's protocol options."""
    return load_dataset(
        config.dataset, data_dir or config.data_dir, config.manual_dir, zappos_split=config.zappos_split,
        equal_pairs=config.equal_pairs, test_pairs_fraction=config.test_pairs_fraction, unique_pairs=config.unique_pairs,
    )
