"""Your own pair annotations: a folder of images and a CSV of comparisons."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import sys

import numpy as np
import tensorflow_datasets as tfds

from relrank_datasets import image_files, pair_index, sources

LABELS = {"more": 1.0, "1": 1.0, "1.0": 1.0, "less": 0.0, "0": 0.0, "0.0": 0.0, "equal": 0.5, "0.5": 0.5}
RETRACTION = "undo"  # a row with this label withdraws the latest earlier answer to its pair by its annotator
REQUIRED_COLUMNS = ("image_a", "image_b", "attribute", "label")
TEST_FRACTION = 0.2
SPLIT_SEED = 0
MAX_REPORTED = 20


def read_text(csv_path: str) -> str:
    """The CSV as text: UTF-8, with or without the byte-order mark Excel writes."""
    with open(csv_path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise sources.SourceFilesError(
            f"{csv_path} is not UTF-8 text (byte 0x{raw[error.start]:02x} on line {line}); "
            f"save it as UTF-8 (in Excel: CSV UTF-8)") from None


def read_annotations(csv_path: str, known_images: set[str], refused: dict[str, str] | None = None,
                     unique_pairs: bool = False, allow_empty: bool = False) -> list[dict]:
    """Parse and validate the CSV; one SourceFilesError lists every problem with its line number.

    `refused` maps image names that exist but may not be used to the reason. A pair annotated more than
    once (crowd votes) is kept as every vote, unless `unique_pairs`, which refuses repeats as problems.
    A row labelled `undo` (relrank annotate's undo) withdraws the latest earlier answer to the same pair and
    attribute by the same annotator (the optional `annotator` column). Extra columns (`time`) are ignored.
    """
    refused = refused or {}
    problems: list[str] = []
    answers: list[dict] = []  # every answer row, retracted ones set to None
    latest: dict[tuple, list[int]] = {}  # (annotator, attribute, pair) -> its answers' indices, oldest first
    text = read_text(csv_path)
    if not text.strip():
        raise sources.SourceFilesError(f"{csv_path} is empty; expected the header {','.join(REQUIRED_COLUMNS)}")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise sources.SourceFilesError(f"{csv_path}: missing column(s) {', '.join(missing)}; "
                                       f"expected {', '.join(REQUIRED_COLUMNS)} and optionally split")
    unknown: list[str] = []
    for row in reader:
        line = reader.line_num
        if any(row.get(c) is None for c in REQUIRED_COLUMNS):
            fields = sum(v is not None for k, v in row.items() if k is not None)
            problems.append(f"line {line}: {fields} field(s), expected {len(reader.fieldnames)} "
                            f"({','.join(reader.fieldnames)})")
            continue
        if any(extra.strip() for extra in row.get(None, [])):
            problems.append(f"line {line}: more fields than the header has (quote names that hold a comma)")
            continue
        a, b = (_image_name(row[c], known_images) for c in ("image_a", "image_b"))
        attr = row["attribute"].strip()
        word = row["label"].strip().lower()
        label = LABELS.get(word)
        split = (row.get("split") or "").strip().lower()
        for name in (a, b):
            if name in refused:
                problems.append(f"line {line}: {name!r} {refused[name]}")
            elif name not in known_images:
                unknown.append(f"line {line}: {name!r}")
        if label is None and word != RETRACTION:
            problems.append(f"line {line}: label {row['label']!r} is not more/less/equal, 1/0/0.5 or {RETRACTION}")
            continue
        if split not in ("", "train", "test"):
            problems.append(f"line {line}: split {split!r} is not train or test")
        if a == b:
            problems.append(f"line {line}: {a!r} is compared with itself")
            continue
        key = ((row.get("annotator") or "").strip(), attr, min(a, b), max(a, b))
        if word == RETRACTION:
            if not latest.get(key):
                problems.append(f"line {line}: undoes an answer that is not there ({a!r} vs {b!r}, {attr})")
            else:
                answers[latest[key].pop()] = None
            continue
        latest.setdefault(key, []).append(len(answers))
        answers.append(dict(a=a, b=b, attribute=attr, target=label, split=split, annotator=key[0], line=line))
    rows: list[dict] = []
    seen: dict[tuple, tuple[int, float]] = {}
    for r in filter(None, answers):
        line = r.pop("line")
        key = (r["attribute"], min(r["a"], r["b"]), max(r["a"], r["b"]))
        oriented = r["target"] if r["a"] < r["b"] else 1.0 - r["target"]
        if key in seen and unique_pairs:
            first_line, first_label = seen[key]
            verb = "duplicates" if first_label == oriented else "contradicts"
            problems.append(f"line {line}: {verb} line {first_line} ({r['a']!r} vs {r['b']!r}, {r['attribute']})")
            continue
        seen.setdefault(key, (line, oriented))
        rows.append(r)
    if unknown:
        problems.append(f"{len(unknown)} unknown image name(s), e.g. " + "; ".join(unknown[:5]))
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise sources.SourceFilesError(f"{csv_path} has {len(problems)} problem(s):\n  {shown}{more}")
    if not rows and not allow_empty:
        raise sources.SourceFilesError(f"{csv_path} has a header but no pairs")
    return rows


def votes_of(rows: list[dict]) -> dict[tuple, list[float]]:
    """The votes on each pair: {(attribute, first name, second name): targets as the first compares with the second}."""
    votes: dict[tuple, list[float]] = {}
    for r in rows:
        first, second = sorted((r["a"], r["b"]))
        votes.setdefault((r["attribute"], first, second), []).append(r["target"] if r["a"] == first else 1.0 - r["target"])
    return votes


def majority(votes: list[float]) -> float:
    """The target most votes give (1, 0 or 0.5); 0.5, a tie the metric skips, when no answer has the most."""
    counts = {target: votes.count(target) for target in (1.0, 0.0, 0.5)}
    top = max(counts.values())
    winners = [target for target, n in counts.items() if n == top]
    return winners[0] if len(winners) == 1 else 0.5


def vote_counts(votes: dict[tuple, list[float]]) -> dict[str, int]:
    """How many pairs were annotated more than once, and how many of those got different answers."""
    repeated = [v for v in votes.values() if len(v) > 1]
    return dict(repeated_pairs=len(repeated), conflicting_pairs=sum(len(set(v)) > 1 for v in repeated))


def _image_name(field: str, known_images: set[str]) -> str:
    """An image name as written: exactly, when an image bears it (' a.jpg' may be a file's name), else without
    the spaces around it (hand-written CSVs put one after each comma)."""
    return field if field in known_images else field.strip()


def image_names(images_root: str) -> tuple[set[str], dict[str, str]]:
    """Names (relative to the images folder) of the files that may be used, and of links that may not, with why.

    A symbolic link is refused when it leads outside the images folder, as a name with ../ is.
    """
    real_root = os.path.realpath(images_root)
    known, refused = set(), {}
    for folder, _, files in os.walk(images_root):
        for f in files:
            path = os.path.join(folder, f)
            name = os.path.relpath(path, images_root).replace(os.sep, "/")
            target = os.path.realpath(path)
            if os.path.commonpath([real_root, target]) != real_root:
                refused[name] = (f"is a link to {target}, outside {os.path.basename(real_root)}/; "
                                 f"copy the file into {os.path.basename(real_root)}/ instead")
            else:
                known.add(name)
    return known, refused


def images_folder(root: str) -> str:
    """Where the images of an annotation folder are: its images/ sub-folder, else the folder itself."""
    return os.path.join(root, "images") if os.path.isdir(os.path.join(root, "images")) else root


def split_by_image(names: list[str]) -> set[str]:
    """A seeded choice of test images: no test image is seen in training."""
    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(len(names))
    return {names[i] for i in order[: max(1, round(TEST_FRACTION * len(names)))]}


def builder_config(manual_dir: str, data_dir: str, sources: str, unique_pairs: bool):
    """A builder config per annotation folder *and content*: editing pairs.csv or images/ prepares anew.

    Copies prepared from an earlier content of the same folder are named and removed.
    """
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


class Builder(image_files.ImageFilesBuilder):
    """Pairs from a CSV (image_a, image_b, attribute, label[, split]) over a folder of images."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Point --manual_dir at a folder holding images/ (your images, in any
    sub-folders; or the images in the folder itself, as relrank annotate
    leaves them) and pairs.csv with the header image_a,image_b,attribute,label
    and optionally split, annotator and time. Image names are paths relative
    to images/ (or to the folder). label is more, less or equal (or 1, 0,
    0.5): how image_a compares with image_b; undo withdraws the latest earlier
    answer to that pair by the same annotator.
    split is train or test; without it, 20% of the images (seeded) are held out
    for testing and pairs that straddle the two sets are left out. A pair may
    be annotated several times (crowd votes): training uses every vote, a test
    pair counts once, by majority (a draw is a tie, which evaluation skips).
    """

    BUILDER_CONFIGS = []

    def __init__(self, *, unique_pairs: bool = False, **kwargs):
        self.unique_pairs = unique_pairs  # refuse pairs annotated more than once
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=pair_index.image_features(None), metadata=pair_index.PairIndexMetadata(), disable_shuffling=True
        )

    def _split_generators(self, dl_manager):
        root = image_files.manual_dir(self, dl_manager)
        instructions = self.MANUAL_DOWNLOAD_INSTRUCTIONS
        images_root = images_folder(sources.require(root, instructions))
        known, refused = image_names(images_root)
        rows = read_annotations(sources.require(os.path.join(root, "pairs.csv"), instructions), known, refused,
                                self.unique_pairs)
        names = sorted({r["a"] for r in rows} | {r["b"] for r in rows})
        index = {name: i for i, name in enumerate(names)}
        test_images = split_by_image(names) if not any(r["split"] for r in rows) else set()
        attributes = list(dict.fromkeys(r["attribute"] for r in rows))
        grouped: dict = {"train": {a: [] for a in attributes}, "test": {a: [] for a in attributes}}
        dropped, test_rows = 0, []
        for r in rows:
            split = r["split"] or {0: "train", 2: "test"}.get((r["a"] in test_images) + (r["b"] in test_images))
            if split is None:
                dropped += 1
            elif split == "train":  # every vote
                grouped["train"][r["attribute"]].append((index[r["a"]], index[r["b"]], r["target"]))
            else:
                test_rows.append(r)
        for (attr, first, second), votes in votes_of(test_rows).items():  # each pair once, by majority
            grouped["test"][attr].append((index[first], index[second], majority(votes)))
        pair_sets = {
            split: {attr: pair_index.encode(*(np.array(c) for c in zip(*pairs))) if pairs else pair_index.encode([], [], [])
                    for attr, pairs in by_attr.items()}
            for split, by_attr in grouped.items()
        }
        self.info.metadata.update(attributes=attributes, pair_sets=pair_sets, dropped_pairs=dropped,
                                  **vote_counts(votes_of(rows)))
        paths = [os.path.join(images_root, n) for n in names]
        return {pair_index.IMAGES_SPLIT: self._generate_examples(paths, names)}
