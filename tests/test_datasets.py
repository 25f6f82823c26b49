"""The dataset builders: every one prepares from its dummy_data; real PubFig and UT-Zap50K when present."""

import os
import shutil
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import REPO, run_cli
from relrank.data.datasets import load_dataset
from relrank.errors import UserError
from relrank.evaluation.accuracy import pair_accuracy

DUMMY = os.path.join(REPO, "datasets")
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
PUBFIG = os.path.join(SHARED, "pubfig")
ZAPPOS = os.path.join(SHARED, "ut-zap50k", "ut-zap50k-data")
needs_pubfig = pytest.mark.skipif(not os.path.exists(os.path.join(PUBFIG, "data.mat")),
                                  reason=f"real PubFig data not found at {PUBFIG}")
needs_zappos = pytest.mark.skipif(not os.path.exists(os.path.join(ZAPPOS, "zappos-labels.mat")),
                                  reason=f"real UT-Zap50K annotations not found at {ZAPPOS}")


def strings(cell):
    return [str(np.asarray(x).ravel()[0]) for x in np.asarray(cell, dtype=object).ravel()]


def all_pairs_targets(data_mat, members, k):
    """Independent: loop over all combinations, comparing class strengths."""
    classes = data_mat["class_labels"].ravel().astype(int) - 1
    ordering = data_mat["relative_ordering"].astype(float)
    targets = []
    for x in range(len(members)):
        for y in range(x + 1, len(members)):
            sa, sb = ordering[k, classes[members[x]]], ordering[k, classes[members[y]]]
            targets.append(1.0 if sa > sb else 0.0 if sa < sb else 0.5)
    return np.array(targets)


@pytest.mark.parametrize("name", ["pubfig", "osr"])
def test_parikh_grauman_dummy(name, tmp_path):
    data = load_dataset(name, data_dir=str(tmp_path), manual_dir=os.path.join(DUMMY, name, "dummy_data"))
    mat = scipy.io.loadmat(os.path.join(DUMMY, name, "dummy_data", "data.mat"))
    assert data.attributes == strings(mat["attribute_names"])
    assert len(data.source) == len(strings(mat["im_names"]))
    assert [data.source[i]["name"].decode() if isinstance(data.source[i]["name"], bytes) else data.source[i]["name"]
            for i in range(3)] == strings(mat["im_names"])[:3]
    training = np.flatnonzero(mat["used_for_training"].ravel() == 1)
    test = np.flatnonzero(mat["used_for_training"].ravel() == 0)
    for k, attr in enumerate(data.attributes):
        for split, members in (("train", training), ("test", test)):
            pairs = data.pairs(split, attr)
            assert len(pairs) == len(members) * (len(members) - 1) // 2
            np.testing.assert_array_equal(pairs.target, all_pairs_targets(mat, members, k))
    assert 0.5 in data.pairs("train", data.attributes[0]).target  # the dummy has tied classes
    np.testing.assert_allclose(np.asarray(data.source[0]["feat"]), mat["feat"][0], rtol=1e-6)


def test_lfw10_dummy(tmp_path):
    root = os.path.join(DUMMY, "lfw10", "dummy_data")
    data = load_dataset("lfw10", data_dir=str(tmp_path), manual_dir=root)
    assert len(data.attributes) == 10
    names = [data.source[i]["name"] for i in range(len(data.source))]
    names = [n.decode() if isinstance(n, bytes) else n for n in names]
    for attr in ("baldhead", "young"):
        for split in ("train", "test"):
            mat = scipy.io.loadmat(os.path.join(root, "LFW10", "annotations", f"{attr}{split}.mat"))
            compare, votes = mat["images_compare"], mat["attribute_strengths"][:, 1:]
            pairs = data.pairs(split, attr)
            assert len(pairs) == len(compare)
            for row in range(len(compare)):
                assert names[pairs.a[row]] == str(compare[row, 1][0]) and names[pairs.b[row]] == str(compare[row, 2][0])
                best = [i for i in range(3) if votes[row, i] == votes[row].max()][0]  # first maximum wins
                assert pairs.target[row] == [1.0, 0.0, 0.5][best]
            assert pairs.target[0] == 1.0  # votes (2, 2, 1): a tie between "more" and "less" goes to "more"


def test_zappos_dummy(tmp_path):
    root = os.path.join(DUMMY, "zappos", "dummy_data")
    one = load_dataset("zappos1", data_dir=str(tmp_path), manual_dir=root, zappos_split=3)
    assert len(one.source) == 18  # the 3 unlabelled images are not stored
    names = {one.source[i]["name"] for i in range(18)}
    names = {n.decode() if isinstance(n, bytes) else n for n in names}
    assert "Boots/Ankle/Co. Inc./0.jpg" in names and "Shoes/Sneakers/Levi's Shoes/0.jpg" in names  # folder fixes
    labels = scipy.io.loadmat(os.path.join(root, "ut-zap50k-data", "zappos-labels.mat"))["mturkOrder"].ravel()
    splits = scipy.io.loadmat(os.path.join(root, "ut-zap50k-data", "train-test-splits.mat"))
    for k, attr in enumerate(one.attributes):
        rows = splits["testIndexAll"].ravel()[k].ravel()[2].ravel().astype(int) - 1
        expected = np.where(labels[k][rows, 3] == 1, 1.0, 0.0)
        np.testing.assert_array_equal(one.pairs("test", attr).target, expected)
        assert len(one.pairs("train", attr)) == 7
    two = load_dataset("zappos2", data_dir=str(tmp_path), manual_dir=root, equal_pairs=True)
    train = two.pairs("train", "open")
    assert len(train) == 10 + 3 and np.sum(train.target == 0.5) == 3
    assert len(two.pairs("test", "open")) == 4
    with pytest.raises(UserError, match="no pair set 'train_11'"):
        load_dataset("zappos1", data_dir=str(tmp_path), manual_dir=root, zappos_split=11)


def test_pairs_csv_dummy(tmp_path):
    data = load_dataset("pairs_csv", data_dir=str(tmp_path), manual_dir=os.path.join(DUMMY, "pairs_csv", "dummy_data"))
    assert data.attributes == ["warm", "cluttered"]
    assert len(data.pairs("train", "warm")) == 7 and len(data.pairs("test", "warm")) == 3
    assert set(np.unique(data.pairs("train", "cluttered").target)) <= {0.0, 0.5, 1.0}


def write_csv_dataset(root, lines, n_images=10):
    os.makedirs(os.path.join(root, "images"))
    for i in range(n_images):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(os.path.join(root, "images", f"{i}.png"))
    with open(os.path.join(root, "pairs.csv"), "w") as f:
        f.write("\n".join(["image_a,image_b,attribute,label", *lines]) + "\n")


def test_pairs_csv_reports_every_problem_with_line_numbers(tmp_path):
    root = str(tmp_path / "mine")
    write_csv_dataset(root, ["0.png,1.png,warm,more", "2.png,2.png,warm,less", "1.png,0.png,warm,more",
                             "0.png,1.png,warm,more", "3.png,ghost.png,warm,equal", "4.png,5.png,warm,bigger"])
    with pytest.raises(UserError) as error:
        load_dataset("pairs_csv", data_dir=str(tmp_path / "tfds"), manual_dir=root)
    message = str(error.value)
    assert "line 3: '2.png' is compared with itself" in message
    assert "line 6: 'ghost.png'" in message
    assert "line 7: label 'bigger'" in message
    assert "duplicates" not in message and "contradicts" not in message  # crowd votes repeat pairs
    with pytest.raises(UserError) as error:
        load_dataset("pairs_csv", data_dir=str(tmp_path / "tfds"), manual_dir=root, unique_pairs=True)
    message = str(error.value)
    assert "line 4: contradicts line 2" in message  # 1 more than 0, after 0 more than 1
    assert "line 5: duplicates line 2" in message and "line 7: label 'bigger'" in message


def test_pairs_csv_default_split_keeps_test_images_unseen(tmp_path):
    root = str(tmp_path / "mine")
    lines = [f"{i}.png,{j}.png,warm,{'more' if i > j else 'less'}" for i in range(10) for j in range(i + 1, 10)]
    write_csv_dataset(root, lines)
    data = load_dataset("pairs_csv", data_dir=str(tmp_path / "tfds"), manual_dir=root)
    train, test = data.pairs("train", "warm"), data.pairs("test", "warm")
    assert set(train.images()).isdisjoint(test.images())
    assert len(test.images()) == 2 and len(train) == 28 and len(test) == 1
    assert data.metadata["dropped_pairs"] == 45 - 28 - 1


def test_missing_and_corrupt_source_files(tmp_path):
    with pytest.raises(UserError) as error:
        load_dataset("lfw10", data_dir=str(tmp_path / "a"), manual_dir=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(error.value) and "LFW10.zip" in str(error.value)

    pubfig = str(tmp_path / "pubfig")
    shutil.copytree(os.path.join(DUMMY, "pubfig", "dummy_data"), pubfig)
    os.remove(os.path.join(pubfig, "data.mat"))
    with pytest.raises(UserError, match="missing .*data.mat(.|\n)*relative_attributes_v2.zip"):
        load_dataset("pubfig", data_dir=str(tmp_path / "b"), manual_dir=pubfig)

    shutil.rmtree(pubfig)
    shutil.copytree(os.path.join(DUMMY, "pubfig", "dummy_data"), pubfig)
    with open(os.path.join(pubfig, "images", "BobB_2.jpg"), "wb") as f:
        f.write(b"not a jpeg at all")
    with pytest.raises(UserError, match="cannot read image .*BobB_2.jpg"):
        load_dataset("pubfig", data_dir=str(tmp_path / "c"), manual_dir=pubfig)


@pytest.fixture(scope="session")
def pubfig_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds_pubfig"))


@needs_pubfig
def test_real_pubfig_counts_and_protocol(pubfig_dir):
    data = load_dataset("pubfig", data_dir=pubfig_dir, manual_dir=PUBFIG)
    mat = scipy.io.loadmat(os.path.join(PUBFIG, "data.mat"))
    assert len(data.source) == 772
    assert data.attributes == strings(mat["attribute_names"]) and len(data.attributes) == 11
    assert int(mat["used_for_training"].sum()) == 241
    predictions = mat["relative_att_predictions"]
    accuracies = []
    for k, attr in enumerate(data.attributes):
        assert len(data.pairs("train", attr)) == 28_920
        test = data.pairs("test", attr)
        assert len(test) == 140_715
        accuracies.append(pair_accuracy(predictions[:, k], test))
    # Parikh & Grauman's own predictions, scored by our pairs and rule, give their published figures.
    expected = [81.00, 77.31, 81.05, 79.66, 76.14, 87.91, 78.89, 80.72, 74.84, 78.07, 80.46]
    np.testing.assert_allclose(accuracies, expected, atol=0.01)
    assert abs(np.mean(accuracies) - 79.64) <= 0.01


@needs_pubfig
def test_train_and_evaluate_on_real_pubfig(pubfig_dir, tmp_path):
    workdir = str(tmp_path / "male")
    common = [f"--data_dir={pubfig_dir}"]
    result = run_cli("train.py", "--dataset=pubfig", "--attr=Male", "--model=vgg16_small", f"--manual_dir={PUBFIG}",
                     f"--workdir={workdir}", "--stop_after_steps=20", *common)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = run_cli("evaluate.py", f"--workdir={workdir}", "--json", *common)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    import json
    (row,) = json.loads(evaluated.stdout)["results"]
    assert row["attr"] == "Male" and row["step"] == 20 and row["num_pairs"] == 140_715 and row["num_images"] == 531
    # Independently: score the test images named in data.mat, then count correctly ordered pairs one by one.
    import relrank

    mat = scipy.io.loadmat(os.path.join(PUBFIG, "data.mat"))
    data = load_dataset("pubfig", data_dir=pubfig_dir, manual_dir=PUBFIG)
    test = np.flatnonzero(mat["used_for_training"].ravel() == 0)
    scores = relrank.load(workdir).score(data.load_images(test, 32))
    targets = all_pairs_targets(mat, test, data.attributes.index("Male"))
    first, second = np.triu_indices(len(test), 1)
    counted = targets != 0.5
    correct = np.where(scores[first] > scores[second], 1.0, np.where(scores[first] < scores[second], 0.0, 0.5))
    assert abs(row["accuracy"] - 100 * np.mean(correct[counted] == targets[counted])) < 1e-9


@needs_zappos
def test_real_zappos_counts(tmp_path):
    """UT-Zap50K from the real annotations, with placeholder images (the real ones are not here)."""
    root = tmp_path / "zappos"
    os.makedirs(root)
    os.symlink(ZAPPOS, root / "ut-zap50k-data")
    paths = strings(scipy.io.loadmat(os.path.join(ZAPPOS, "image-path.mat"))["imagepath"])
    labels = scipy.io.loadmat(os.path.join(ZAPPOS, "zappos-labels.mat"))
    hard = scipy.io.loadmat(os.path.join(ZAPPOS, "zappos-labels-fg.mat"))["mturkHard"].ravel()
    def images_of(matrices):
        return set().union(*(set(m[:, 0].astype(int) - 1) | set(m[:, 1].astype(int) - 1) for m in matrices))

    ordered_and_hard = images_of(list(labels["mturkOrder"].ravel()) + list(hard))
    used = ordered_and_hard | images_of(labels["mturkEqual"].ravel())
    assert (len(ordered_and_hard), len(used)) == (5547, 5551)  # the 'equal' pairs add 4 images
    placeholder = Image.new("RGB", (8, 8), (128, 128, 128))
    for i in used:
        path = root / "ut-zap50k-images" / paths[i]
        os.makedirs(path.parent, exist_ok=True)
        placeholder.save(path)
    one = load_dataset("zappos1", data_dir=str(tmp_path / "tfds"), manual_dir=str(root), zappos_split=1)
    assert len(one.source) == 5551
    expected_one = {"open": (1463, 300), "pointy": (1228, 300), "sporty": (1383, 300), "comfort": (1477, 300)}
    assert {a: (len(one.pairs("train", a)), len(one.pairs("test", a))) for a in one.attributes} == expected_one
    two = load_dataset("zappos2", data_dir=str(tmp_path / "tfds"), manual_dir=str(root))
    assert [len(two.pairs("test", a)) for a in two.attributes] == [1100, 1172, 1083, 979]
    assert "tensorflow" not in sys.modules


def test_builders_do_not_shadow_huggingface_datasets(tmp_path):
    """Installed, the builders are `relrank_datasets`; no top-level `datasets` package comes from relrank."""
    import subprocess

    code = ("import importlib.util, relrank_datasets; spec = importlib.util.find_spec('datasets'); "
            "print(relrank_datasets.__name__, spec.origin if spec else None)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    name, origin = result.stdout.split()
    assert name == "relrank_datasets"
    assert origin == "None" or not origin.startswith(os.path.join(REPO, "datasets"))
