"""The Place Pulse 2.0 builder on dummy data in the release's format, and its errors."""

import csv
import os
import shutil

import numpy as np
import pytest

from conftest import REPO, run_cli
from relrank.data.datasets import load_dataset
from relrank.errors import UserError

DUMMY = os.path.join(REPO, "datasets", "placepulse", "dummy_data")


def test_votes_become_pairs_per_category_with_an_image_split(tmp_path, capfd):
    data = load_dataset("placepulse", data_dir=str(tmp_path), manual_dir=DUMMY, equal_pairs=True)
    assert "placepulse: 1 image id(s) in votes.csv with no file in images/" in capfd.readouterr().err
    assert data.attributes == ["safety", "lively", "wealthy"]
    with open(os.path.join(DUMMY, "votes.csv")) as f:
        votes = list(csv.DictReader(f))
    ids = sorted({v["left_id"] for v in votes} | {v["right_id"] for v in votes})
    missing, unreadable = data.metadata["missing_images"], data.metadata["unreadable_images"]
    assert len(missing) == 1 and len(unreadable) == 1 and not os.path.exists(os.path.join(DUMMY, "images", missing[0] + ".jpg"))
    kept = [i for i in ids if i not in missing + unreadable]
    assert len(data.source) == len(kept) == 30
    names = [data.source[k]["name"].decode() for k in range(len(data.source))]
    assert names == kept

    # An independent count: every vote between two kept images of one side of the split, by category and winner.
    train = data.pair_sets["train"]
    test_images = set(np.unique(np.concatenate([data.pair_sets["test"][a].images() for a in data.attributes])))
    train_images = set(np.unique(np.concatenate([p.images() for s in ("train", "train_equal") for p in data.pair_sets[s].values()])))
    assert test_images and not test_images & train_images  # no test image seen in training
    expected = {s: {a: [] for a in data.attributes} for s in ("train", "train_equal", "test")}
    for v in votes:
        if v["left_id"] not in kept or v["right_id"] not in kept:
            continue
        a, b = kept.index(v["left_id"]), kept.index(v["right_id"])
        side = {(True, True): "test", (False, False): "train"}.get((a in test_images, b in test_images))
        if side is None:
            continue
        if v["winner"] == "equal":
            side = "train_equal" if side == "train" else None
        if side:
            expected[side][v["category"]].append((a, b, {"left": 1.0, "right": 0.0, "equal": 0.5}[v["winner"]]))
    for side, by_attr in expected.items():
        for attr, rows in by_attr.items():
            p = data.pair_sets[side][attr]
            assert list(zip(p.a.tolist(), p.b.tolist(), p.target.tolist())) == rows, (side, attr)
    assert sum(len(p) for p in train.values()) > 500 and all(len(data.pairs("test", a)) for a in data.attributes)


def copy_dummy(tmp_path, edit):
    root = tmp_path / "src"
    shutil.copytree(DUMMY, root)
    lines = (root / "votes.csv").read_text().splitlines()
    (root / "votes.csv").write_text("\n".join(edit(lines)) + "\n")
    return str(root)


@pytest.mark.parametrize("edit, message", [
    (lambda lines: [lines[0].replace("category", "kategory")] + lines[1:], "unknown column(s) kategory; missing column(s) category"),
    (lambda lines: lines[:5] + [lines[5].replace(",left,", ",lft,").replace(",right,", ",lft,").replace(",equal,", ",lft,")] + lines[6:],
     "row 6: winner 'lft' is not left, right, equal"),
    (lambda lines: lines[:3] + [lines[3].rsplit(",", 1)[0] + ",scary"] + lines[4:], "row 4: category 'scary' is not one of"),
])
def test_bad_votes_files_name_the_column_or_row(tmp_path, edit, message):
    with pytest.raises(UserError, match="cannot prepare dataset 'placepulse'") as error:
        load_dataset("placepulse", data_dir=str(tmp_path / "tfds"), manual_dir=copy_dummy(tmp_path, edit))
    assert message in str(error.value)


def test_missing_votes_file_names_it_and_what_to_download(tmp_path):
    with pytest.raises(UserError) as error:
        load_dataset("placepulse", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path))
    assert f"missing {tmp_path / 'votes.csv'}" in str(error.value) and "pulse.media.mit.edu" in str(error.value)


def test_trains_on_place_pulse(tmp_path):
    result = run_cli("train.py", "--dataset=placepulse", f"--manual_dir={DUMMY}", f"--data_dir={tmp_path / 'tfds'}",
                     f"--workdir={tmp_path / 'run'}", "--attr=all", "--model=vgg16_small", "--image_size=32",
                     "--epochs=1", "--batch_pairs=16")
    # One epoch of 22 steps at the paper's fine-tuning rates from random init, on 27 dummy images, learns nothing,
    # and the run may say so (exit status 3, relrank/train/monitor.py): the mechanics are what is tested here.
    assert result.returncode in (0, 3), result.stderr[-3000:]
    assert "placepulse/3 attributes: mean test accuracy" in result.stdout
