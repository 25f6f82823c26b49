"""Sparse-pair test beds: pairs_csv folders shaped like users' own data (and LFW-10), from data we have.

    python benchmarks/sparse_pairs.py pubfig --pubfig=../shared/data/pubfig --pairs=500 --out=beds/pubfig500
    python benchmarks/sparse_pairs.py synthetic --pairs=500 --out=beds/synthetic500
    python benchmarks/sparse_pairs.py pubfig ... --tuning    # validation bed: no test image is used

pubfig: per attribute, `--pairs` random training pairs among PubFig's training images, a
`--tie_share` of them between images of equal strength (label `equal`, as LFW-10's "about the
same"); the test pairs are PubFig's whole test protocol (every pair of test images whose
strengths differ; the tied ones are skipped by the metric anyway).
synthetic: the embedded shapes (their latent strengths known); a training pair is `equal` when
its two strengths differ by less than the threshold that makes `--tie_share` of random pairs
ties, and 5% of the others are flipped (crowd noise); test pairs are noise-free.
--tuning: the test pairs come from a held-out fifth of the *training* images, and no test image
is written: tune recipes on these beds, never on the test pairs.
--tuning --held_out_people=K (pubfig): faces of new people, as LFW-10's test faces are: every training
image of K people (chosen by --seed) and a fifth of the others' are held out; the test pairs are those
with at least one held-out person's image, the training pairs come from the other people's remaining
images. PubFig's own test images show its training people, so they reward memorising identities; this
bed does not.

Then train as a user would:
    python train.py --dataset=pairs_csv --manual_dir=beds/pubfig500 --attr=all --recipe=scratch
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil

import numpy as np

LABELS = {1.0: "more", 0.0: "less", 0.5: "equal"}
TIE_SHARE = 0.4  # LFW-10: about a third to a half of the pairs are "about the same"
TUNING_FRACTION = 0.2
SYNTHETIC_IMAGES = {"train": 1200, "test": 300}
SYNTHETIC_TEST_PAIRS = 3000
SYNTHETIC_NOISE = 0.05


def sample_pairs(strengths: np.ndarray, pairs: int, tie_share: float, rng: np.random.Generator):
    """(a, b, target): `pairs` distinct pairs of images, round(tie_share * pairs) of them of equal strength."""
    i, j = np.triu_indices(len(strengths), 1)
    tied = strengths[i] == strengths[j]
    ties, others = np.flatnonzero(tied), np.flatnonzero(~tied)
    n_ties = min(len(ties), round(tie_share * pairs))
    chosen = np.concatenate([rng.choice(ties, n_ties, replace=False),
                             rng.choice(others, min(len(others), pairs - n_ties), replace=False)])
    chosen = rng.permutation(chosen)
    a, b = i[chosen], j[chosen]
    swap = rng.uniform(size=len(a)) < 0.5  # either image first, as annotators see them
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    return a, b, compare(strengths[a], strengths[b])


def compare(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    return np.where(sa > sb, 1.0, np.where(sa < sb, 0.0, 0.5))


def write_csv(path: str, rows: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_a", "image_b", "attribute", "label", "split"])
        writer.writerows(rows)


def pubfig_bed(pubfig: str, out: str, pairs: int, tie_share: float, seed: int, tuning: bool,
               held_out_people: int = 0) -> None:
    import scipy.io

    data = scipy.io.loadmat(os.path.join(pubfig, "data.mat"))
    names = [str(n[0]) for n in data["im_names"].ravel()]
    classes = data["class_labels"].ravel().astype(int) - 1
    training = data["used_for_training"].ravel() == 1
    ordering = np.asarray(data["relative_ordering"], np.float64)
    attributes = [str(a[0]) for a in data["attribute_names"].ravel()]
    rng = np.random.default_rng(seed)
    train, test = np.flatnonzero(training), np.flatnonzero(~training)
    new_person = np.zeros(len(names), bool)
    if tuning:
        people = rng.permutation(np.unique(classes))[:held_out_people]
        new_person = np.isin(classes, people) & training
        held = rng.permutation(train[~new_person[train]])
        cut = round(TUNING_FRACTION * len(held))
        test, train = np.sort(np.concatenate([held[:cut], np.flatnonzero(new_person)])), np.sort(held[cut:])
    rows = []
    for k, attr in enumerate(attributes):
        strength = ordering[k, classes]
        a, b, target = sample_pairs(strength[train], pairs, tie_share, rng)
        rows += [(names[train[x]], names[train[y]], attr, LABELS[t], "train") for x, y, t in zip(a, b, target)]
        i, j = np.triu_indices(len(test), 1)
        keep = strength[test[i]] != strength[test[j]]
        if held_out_people:
            keep &= new_person[test[i]] | new_person[test[j]]
        i, j = test[i[keep]], test[j[keep]]
        rows += [(names[x], names[y], attr, LABELS[t], "test") for x, y, t in zip(i, j, compare(strength[i], strength[j]))]
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    for index in np.concatenate([train, test]):
        shutil.copy(os.path.join(pubfig, "images", names[index]), os.path.join(out, "images", names[index]))
    write_csv(os.path.join(out, "pairs.csv"), rows)


def synthetic_bed(out: str, pairs: int, tie_share: float, seed: int, tuning: bool) -> None:
    from relrank_datasets.pair_index import sample_distinct_pairs
    from relrank_datasets.synthetic.synthetic_dataset_builder import ATTRIBUTES, SEED, TIE_THRESHOLD, draw_shape

    n_train, n_test = SYNTHETIC_IMAGES["train"], SYNTHETIC_IMAGES["test"]
    strengths = np.random.default_rng(SEED).uniform(size=(n_train + n_test, len(ATTRIBUTES)))
    rng = np.random.default_rng(seed)
    train, test = np.arange(n_train), np.arange(n_train, n_train + n_test)
    if tuning:
        held = rng.permutation(train)
        test, train = np.sort(held[:n_test]), np.sort(held[n_test:])
    threshold = 1 - np.sqrt(1 - tie_share)  # P(|u - v| < t) = 2t - t^2 for independent uniforms
    rows = []
    for k, attr in enumerate(ATTRIBUTES):
        a, b = sample_distinct_pairs(train, pairs, rng)
        diff = strengths[a, k] - strengths[b, k]
        target = np.where(np.abs(diff) < threshold, 0.5, (diff > 0).astype(float))
        flip = (rng.uniform(size=len(target)) < SYNTHETIC_NOISE) & (target != 0.5)
        target = np.where(flip, 1 - target, target)
        rows += [(f"{x}.png", f"{y}.png", attr, LABELS[t], "train") for x, y, t in zip(a, b, target)]
        a, b = sample_distinct_pairs(test, 2 * SYNTHETIC_TEST_PAIRS, rng)
        diff = strengths[a, k] - strengths[b, k]
        keep = np.flatnonzero(np.abs(diff) >= TIE_THRESHOLD)[:SYNTHETIC_TEST_PAIRS]
        rows += [(f"{a[x]}.png", f"{b[x]}.png", attr, LABELS[float(diff[x] > 0)], "test") for x in keep]
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    draw_rng = np.random.default_rng(SEED + 1)
    used = set(train.tolist()) | set(test.tolist())
    for index, row in enumerate(strengths):
        image = draw_shape(row, draw_rng)  # drawn in order, as the builder does: the same images
        if index in used:
            image.save(os.path.join(out, "images", f"{index}.png"))
    write_csv(os.path.join(out, "pairs.csv"), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=["pubfig", "synthetic"])
    parser.add_argument("--out", required=True, help="the folder to write (images/ and pairs.csv)")
    parser.add_argument("--pairs", type=int, default=500, help="training pairs per attribute (default: 500)")
    parser.add_argument("--tie_share", type=float, default=TIE_SHARE, help=f"share of ties among them (default: {TIE_SHARE})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pair sampling (default: 0)")
    parser.add_argument("--tuning", action="store_true", help="test pairs from held-out training images")
    parser.add_argument("--held_out_people", type=int, default=0, help="pubfig with --tuning: hold out every image "
                        "of this many people; test pairs involve them (faces of new people)")
    parser.add_argument("--pubfig", default=os.path.join("..", "shared", "data", "pubfig"),
                        help="PubFig's folder (data.mat and images/)")
    args = parser.parse_args()
    if os.path.exists(os.path.join(args.out, "pairs.csv")):
        raise SystemExit(f"{args.out} already holds a pairs.csv; choose another --out")
    if args.source == "pubfig":
        if args.held_out_people and not args.tuning:
            raise SystemExit("--held_out_people needs --tuning (it splits the training images)")
        pubfig_bed(args.pubfig, args.out, args.pairs, args.tie_share, args.seed, args.tuning, args.held_out_people)
    else:
        synthetic_bed(args.out, args.pairs, args.tie_share, args.seed, args.tuning)
    print(f"wrote {args.out}: train with python train.py --dataset=pairs_csv --manual_dir={args.out} --attr=all "
          f"--recipe=scratch")


if __name__ == "__main__":
    main()
