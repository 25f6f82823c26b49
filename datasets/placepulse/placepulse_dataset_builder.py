"""Place Pulse 2.0 (Dubey et al., ECCV 2016): street-view images compared on six perceptual attributes.

Source files (--manual_dir): votes.csv, one crowd vote per row, with the columns
left_id, right_id, winner (left, right or equal), category (safety, lively,
beautiful, wealthy, depressing, boring) and the release's coordinates
(left_lat, left_long, right_lat, right_long, not used); and images/, one file per
image id: <id>.jpg (or any name whose '_'-separated fields include the id).

Each vote becomes a pair of its category: target 1 when the left image won, 0 when
the right one did, 0.5 for `equal` (those go to the pair set train_equal, used with
--equal_pairs, as for UT-Zap50K). A seeded 10% of the images is held out for testing
with the votes among them; votes between a test and a training image are left out,
so no test image is seen in training. Ids that appear in no file, and files that do
not decode, are reported with a count and skipped with their votes.
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
import tensorflow_datasets as tfds

from relrank_datasets import image_files, pair_index, sources

CATEGORIES = ("safety", "lively", "beautiful", "wealthy", "depressing", "boring")
WINNERS = {"left": 1.0, "right": 0.0, "equal": 0.5}
REQUIRED_COLUMNS = ("left_id", "right_id", "winner", "category")
KNOWN_COLUMNS = REQUIRED_COLUMNS + ("left_lat", "left_long", "right_lat", "right_long")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TEST_FRACTION = 0.1
SPLIT_SEED = 0
SHOWN = 5


def read_votes(path: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(left ids, right ids, targets, category numbers) of every vote; a bad header or row is an error naming it."""
    left, right, target, category = [], [], [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        unknown = [h for h in header if h not in KNOWN_COLUMNS]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if unknown or missing:
            raise sources.SourceFilesError(
                f"{path}: " + "; ".join(filter(None, [f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                                                        f"missing column(s) {', '.join(missing)}" if missing else ""]))
                + f" (expected {', '.join(KNOWN_COLUMNS)}: the Place Pulse 2.0 votes file)")
        at = {name: header.index(name) for name in REQUIRED_COLUMNS}
        for row in reader:
            line = reader.line_num
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise sources.SourceFilesError(f"{path}, row {line}: {len(row)} fields, the header has {len(header)}")
            winner, name = row[at["winner"]].strip().lower(), row[at["category"]].strip().lower()
            if winner not in WINNERS:
                raise sources.SourceFilesError(f"{path}, row {line}: winner {row[at['winner']]!r} is not "
                                               f"{', '.join(WINNERS)}")
            if name not in CATEGORIES:
                raise sources.SourceFilesError(f"{path}, row {line}: category {row[at['category']]!r} is not "
                                               f"one of {', '.join(CATEGORIES)}")
            left.append(row[at["left_id"]].strip())
            right.append(row[at["right_id"]].strip())
            target.append(WINNERS[winner])
            category.append(CATEGORIES.index(name))
    if not left:
        raise sources.SourceFilesError(f"{path} holds no votes")
    return left, right, np.asarray(target, np.float32), np.asarray(category, np.int64)


def files_by_id(images_dir: str) -> dict[str, str]:
    """Image id -> file: the file's stem, and each '_'-separated field of it (the release's long names)."""
    files = {}
    for folder, _, names in os.walk(images_dir):
        for name in sorted(names):
            stem, extension = os.path.splitext(name)
            if extension.lower() not in IMAGE_EXTENSIONS:
                continue
            path = os.path.join(folder, name)
            files.setdefault(stem, path)
            for field in stem.split("_"):
                files.setdefault(field, path)
    return files


def readable(path: str) -> bool:
    try:
        sources.image_bytes(path)
        return True
    except sources.SourceFilesError:
        return False


def report(what: str, items: list[str]) -> None:
    shown = ", ".join(items[:SHOWN]) + (f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else "")
    print(f"placepulse: {len(items)} {what}, skipped with their votes: {shown}", file=sys.stderr)


class Builder(image_files.ImageFilesBuilder):
    """Place Pulse 2.0 votes over street-view images, pairs per category."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Request Place Pulse 2.0 from its authors (http://pulse.media.mit.edu/data/ ;
    Dubey et al., "Deep Learning the City", ECCV 2016). Put in --manual_dir:
      votes.csv   the votes: left_id,right_id,winner,left_lat,left_long,right_lat,right_long,category
      images/     the street-view images, one file per id (<id>.jpg)
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=pair_index.image_features(None), metadata=pair_index.PairIndexMetadata(), disable_shuffling=True,
            homepage="http://pulse.media.mit.edu/data/",
        )

    def _split_generators(self, dl_manager):
        root = image_files.manual_dir(self, dl_manager)
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        left, right, target, category = read_votes(sources.require(os.path.join(root, "votes.csv"), instructions))
        files = files_by_id(sources.require(os.path.join(root, "images"), instructions))
        ids = sorted(set(left) | set(right))
        missing = [i for i in ids if i not in files]
        unreadable = [i for i in ids if i in files and not readable(files[i])]
        if missing:
            report("image id(s) in votes.csv with no file in images/", missing)
        if unreadable:
            report("image file(s) that do not decode", [files[i] for i in unreadable])
        skipped = set(missing) | set(unreadable)
        names = [i for i in ids if i not in skipped]
        if not names:
            raise sources.SourceFilesError(f"none of the {len(ids)} image ids of votes.csv has a readable file in "
                                           f"{os.path.join(root, 'images')}")
        position = {name: k for k, name in enumerate(names)}
        a = np.asarray([position.get(i, -1) for i in left])
        b = np.asarray([position.get(i, -1) for i in right])
        usable = (a >= 0) & (b >= 0) & (a != b)
        test_image = np.zeros(len(names), bool)
        rng = np.random.default_rng(SPLIT_SEED)
        test_image[rng.permutation(len(names))[: max(1, round(TEST_FRACTION * len(names)))]] = True
        in_test = test_image[np.maximum(a, 0)] & test_image[np.maximum(b, 0)]
        in_train = ~test_image[np.maximum(a, 0)] & ~test_image[np.maximum(b, 0)]
        tie = target == 0.5
        chosen = {"train": usable & in_train & ~tie, "train_equal": usable & in_train & tie,
                  "test": usable & in_test & ~tie}
        attributes = [c for k, c in enumerate(CATEGORIES) if (category == k).any()]
        self.info.metadata.update(
            attributes=attributes,
            pair_sets={split: {attr: pair_index.encode(a[keep & (category == CATEGORIES.index(attr))],
                                                       b[keep & (category == CATEGORIES.index(attr))],
                                                       target[keep & (category == CATEGORIES.index(attr))])
                               for attr in attributes} for split, keep in chosen.items()},
            votes=len(target), skipped_votes=int((~usable).sum()), straddling_votes=int((usable & ~in_test & ~in_train).sum()),
            missing_images=missing, unreadable_images=unreadable,
        )
        return {pair_index.IMAGES_SPLIT: self._generate_examples([files[n] for n in names], names)}
