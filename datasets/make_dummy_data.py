"""Write each builder's dummy_data/: tiny, made-up source files in the real formats (for tests).

    python datasets/make_dummy_data.py

Nothing here comes from the real datasets: names, labels and pixels are invented.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.io
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(0)


def cell(strings) -> np.ndarray:
    out = np.empty((1, len(strings)), dtype=object)
    out[0, :] = list(strings)
    return out


def write_image(path: str, size=(24, 20)) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def parikh_grauman(name: str, images_folder: str, attributes: list[str], classes: list[str], per_class: int) -> None:
    root = os.path.join(HERE, name, "dummy_data")
    os.makedirs(root, exist_ok=True)
    names, labels = [], []
    for c, cls in enumerate(classes):
        for i in range(per_class):
            names.append(f"{cls}_{i + 1}.jpg")
            labels.append(c + 1)
    training = np.array([i % per_class < per_class // 2 for i in range(len(names))], np.uint8)
    ordering = np.stack([rng.permutation(len(classes)) + 1 for _ in attributes]).astype(np.uint8)
    ordering[0, 1] = ordering[0, 0]  # two classes alike in the first attribute: tie pairs
    scipy.io.savemat(os.path.join(root, "data.mat"), {
        "im_names": cell(names), "class_labels": np.array(labels, np.uint8)[:, None],
        "used_for_training": training[:, None], "relative_ordering": ordering,
        "attribute_names": cell(attributes), "class_names": cell(classes),
        "feat": rng.normal(size=(len(names), 6)),
    })
    for n in names:
        write_image(os.path.join(root, images_folder, n))


def lfw10() -> None:
    from relrank_datasets.lfw10.lfw10_dataset_builder import ATTRIBUTES

    root = os.path.join(HERE, "lfw10", "dummy_data", "LFW10")
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for i in range(1, 13):
        write_image(os.path.join(root, "images", f"{i}.jpg"))
    for attr in ATTRIBUTES:
        for split in ("train", "test"):
            n = 6
            compare = np.empty((n, 3), dtype=object)
            strengths = np.zeros((n, 4))
            for row in range(n):
                a, b = rng.choice(np.arange(1, 13), 2, replace=False)
                compare[row] = [np.array([[row + 1]]), f"{a}.jpg", f"{b}.jpg"]
                strengths[row] = [row + 1, *rng.integers(0, 4, 3)]
            strengths[0, 1:] = [2, 2, 1]  # a tie in votes: the first maximum wins (target 1)
            scipy.io.savemat(os.path.join(root, "annotations", f"{attr}{split}.mat"),
                             {"images_compare": compare, "attribute_strengths": strengths})


def zappos() -> None:
    root = os.path.join(HERE, "zappos", "dummy_data")
    data = os.path.join(root, "ut-zap50k-data")
    os.makedirs(data, exist_ok=True)
    # imagepath entries; the folders on disk lose a trailing '.' and spell Levi's as Levi's&#174;.
    paths = [f"Shoes/Oxfords/Brand A/{i}.jpg" for i in range(6)]
    paths += [f"Boots/Ankle/Co. Inc./{i}.jpg" for i in range(6)]
    paths += [f"Shoes/Sneakers/Levi's Shoes/{i}.jpg" for i in range(6)]
    paths += [f"Sandals/Flat/Unused/{i}.jpg" for i in range(3)]  # never labelled: not stored
    scipy.io.savemat(os.path.join(data, "image-path.mat"), {"imagepath": cell(paths).T})
    for p in paths[:18]:
        on_disk = p.replace("Co. Inc.", "Co. Inc").replace("Levi's ", "Levi's&#174; ")
        write_image(os.path.join(root, "ut-zap50k-images", on_disk))

    def labels(n, attribute, codes):
        rows = []
        for _ in range(n):
            a, b = rng.choice(np.arange(1, 19), 2, replace=False)
            rows.append([a, b, attribute, rng.choice(codes), 1, 0.8])
        return np.array(rows, np.float64)

    order = np.empty((1, 4), dtype=object)
    equal = np.empty((1, 4), dtype=object)
    hard = np.empty((1, 4), dtype=object)
    train_index = np.empty((1, 4), dtype=object)
    test_index = np.empty((1, 4), dtype=object)
    for k in range(4):
        order[0, k] = labels(10, k + 1, [1, 2])
        equal[0, k] = labels(3, k + 1, [3])
        hard[0, k] = labels(4, k + 1, [1, 2])
        train_cells, test_cells = np.empty((10, 1), dtype=object), np.empty((10, 1), dtype=object)
        for s in range(10):
            rows = rng.permutation(10) + 1
            train_cells[s, 0] = rows[:7, None].astype(np.float64)
            test_cells[s, 0] = rows[7:, None].astype(np.float64)
        train_index[0, k], test_index[0, k] = train_cells, test_cells
    scipy.io.savemat(os.path.join(data, "zappos-labels.mat"), {"mturkOrder": order, "mturkEqual": equal})
    scipy.io.savemat(os.path.join(data, "zappos-labels-fg.mat"), {"mturkHard": hard})
    scipy.io.savemat(os.path.join(data, "train-test-splits.mat"), {"trainIndexAll": train_index, "testIndexAll": test_index})


def pairs_csv() -> None:
    root = os.path.join(HERE, "pairs_csv", "dummy_data")
    names = [f"photo_{i}.png" for i in range(8)] + ["more/photo_8.png", "more/photo_9.png"]
    for n in names:
        write_image(os.path.join(root, "images", n))
    lines = ["image_a,image_b,attribute,label,split"]
    for i in range(len(names) - 1):
        for attr in ("warm", "cluttered"):
            label = ["more", "less", "equal", "1", "0"][(i + len(attr)) % 5]
            lines.append(f"{names[i]},{names[i + 1]},{attr},{label},{'test' if i >= 6 else 'train'}")
    lines.append(f"{names[0]},{names[5]},warm,0.5,train")
    with open(os.path.join(root, "pairs.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")


def placepulse() -> None:
    """30 readable images, one id with no file and one file that does not decode; every pair voted on 3 categories."""
    local = np.random.default_rng(1)
    root = os.path.join(HERE, "placepulse", "dummy_data")
    ids = [f"{local.integers(16 ** 12):012x}{k:012x}" for k in range(32)]
    for k, image_id in enumerate(ids[:30]):
        name = f"{image_id}.jpg" if k % 2 else f"40.{k:04d}_-73.{k:04d}_{image_id}_Dummy City.JPG"  # both namings
        write_image(os.path.join(root, "images", name))
    with open(os.path.join(root, "images", f"{ids[30]}.jpg"), "w") as f:
        f.write("not an image")
    # ids[31] has votes and no file.
    with open(os.path.join(root, "votes.csv"), "w") as f:
        f.write("left_id,right_id,winner,left_lat,left_long,right_lat,right_long,category\n")
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                for category in ("safety", "lively", "wealthy"):
                    left, right = (ids[i], ids[j]) if local.uniform() < 0.5 else (ids[j], ids[i])
                    winner = local.choice(["left", "right", "equal"], p=[0.45, 0.45, 0.1])
                    f.write(f"{left},{right},{winner},40.7,-73.9,40.8,-73.9,{category}\n")


if __name__ == "__main__":
    parikh_grauman("pubfig", "images", ["Male", "White", "Young"], ["AliceA", "BobB", "CarlC", "DanaD"], 4)
    parikh_grauman("osr", "spatial_envelope_256x256_static_8outdoorcategories",
                   ["natural", "open", "perspective", "size-large", "diagonal-plane", "depth-close"],
                   ["coast", "forest", "highway", "insidecity"], 4)
    lfw10()
    zappos()
    pairs_csv()
    placepulse()
