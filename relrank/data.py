"""Load a prepared dataset: its pair index and, once each, the images the pairs use."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from tqdm.auto import tqdm

from relrank.errors import UserError
from relrank.preprocess import to_uint8_rgb


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
        return cls(
            np.asarray(data["a"], np.int64), np.asarray(data["b"], np.int64), np.asarray(data["target"], np.float32)
        )

    def remap(self, rows: np.ndarray) -> "Pairs":
        """Replace image indices i by rows[i]."""
        return Pairs(rows[self.a], rows[self.b], self.target)

    def images(self) -> np.ndarray:
        return np.unique(np.concatenate([self.a, self.b]))


@dataclasses.dataclass
class RankingData:
    """A prepared dataset: attribute names, pair sets and random access to its images."""

    name: str
    attributes: list[str]
    pair_sets: dict[str, dict[str, Pairs]]
    source: object  # a TFDS data source over the 'images' split

    def pairs(self, split: str, attr: str) -> Pairs:
        if split not in self.pair_sets:
            raise UserError(f"dataset {self.name!r} has no split {split!r}; splits: {', '.join(self.pair_sets)}")
        return self.pair_sets[split][attr]

    def load_images(self, indices: np.ndarray, size: int, desc: str = "loading images") -> np.ndarray:
        """Decode the images at `indices`, resized to size x size: uint8 [len(indices), size, size, 3]."""
        out = np.empty((len(indices), size, size, 3), np.uint8)
        for row, index in enumerate(tqdm(indices, desc=desc, unit="img", leave=False)):
            example = self.source[int(index)]
            if int(example["index"]) != int(index):
                raise UserError(f"dataset {self.name!r} is out of order at image {index}; delete and rebuild it")
            out[row] = to_uint8_rgb(example["image"], size)
        return out


def dataset_names() -> list[str]:
    import relrank_datasets

    return list(relrank_datasets.BUILDER_MODULES)


def check_attribute(data: RankingData, attr: str) -> None:
    if attr not in data.attributes:
        raise UserError(
            f"dataset {data.name!r} has no attribute {attr!r}; valid attributes: {', '.join(data.attributes)}"
        )


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def load_dataset(name: str, data_dir: str = "", manual_dir: str = "") -> RankingData:
    """Prepare dataset `name` if needed (array_record files, no TensorFlow) and open it."""
    import tensorflow_datasets as tfds
    import relrank_datasets
    from relrank_datasets import pair_index

    if name not in relrank_datasets.BUILDER_MODULES:
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}")
    builder = relrank_datasets.builder_class(name)(
        data_dir=data_dir or default_data_dir(), file_format="array_record"
    )
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
    builder.download_and_prepare(download_config=download_config)
    metadata = builder.info.metadata
    pair_sets = {
        split: {attr: Pairs.from_json(p) for attr, p in by_attr.items()}
        for split, by_attr in metadata["pair_sets"].items()
    }
    source = builder.as_data_source(split=pair_index.IMAGES_SPLIT)
    return RankingData(name, list(metadata["attributes"]), pair_sets, source)
