"""How many answers active selection saves: `relrank annotate`'s ranker and pair selection, with an annotator
simulated from ground truth, against random pairs.

    python benchmarks/active.py --dataset=pubfig --pubfig=../shared/data/pubfig
    python benchmarks/active.py --dataset=synthetic
    python benchmarks/active.py --dataset=pubfig --weights=vgg16.safetensors --model=vgg16   # real features

The pool is the training images; the simulated annotator answers more / less / equal from the strengths
(PubFig: the category orderings in data.mat, so two images of one person are "about the same"; synthetic:
the latent strengths, equal when they differ by less than the builder's tie threshold), and flips a
`--noise` share of the other answers. Each answer goes through the tool's own `Selector`; the ranker
(`relrank/annotate/linear.py`, on the tool's features) refits every `--retrain_every` answers, as the server's
does. Test accuracy: the paper's metric on every pair of test images (ties skipped), mean over the
attributes, then mean +- std over `--seeds` (`--tuning`: on a held-out fifth of the pool instead).
Prints a table, appends RESULTS.md rows (unless --no_write), and plots accuracy against answers (--plot).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np

from relrank.annotate.features import compute_features, default_backbone
from relrank.annotate.linear import LinearRanker
from relrank.annotate.selection import Selector
from relrank.data.pairs import Pairs
from relrank.evaluation.accuracy import pair_accuracy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import RESULTS, commit, machine  # noqa: E402

SYNTHETIC_IMAGES = 900  # two thirds pool, one third test


def pubfig(folder: str):
    """(image paths, strengths [images, attributes], attribute names, pool indices, test indices)."""
    import scipy.io

    data = scipy.io.loadmat(os.path.join(folder, "data.mat"))
    names = [str(n[0]) for n in data["im_names"].ravel()]
    classes = data["class_labels"].ravel().astype(int) - 1
    training = data["used_for_training"].ravel() == 1
    strengths = np.asarray(data["relative_ordering"], np.float64)[:, classes].T
    attributes = [str(a[0]) for a in data["attribute_names"].ravel()]
    paths = [os.path.join(folder, "images", n) for n in names]
    release = np.asarray(data["feat"], np.float32)  # the release's GIST + colour features
    return paths, strengths, attributes, np.flatnonzero(training), np.flatnonzero(~training), 0.0, release


def synthetic(out: str, n: int = SYNTHETIC_IMAGES):
    """The embedded shapes (the builder's first `n`, drawn as it draws them), written once to `out`; two answers
    are equal below the builder's tie threshold."""
    from relrank_datasets.synthetic.synthetic_dataset_builder import ATTRIBUTES, SEED, TIE_THRESHOLD, draw_shape

    strengths = np.random.default_rng(SEED).uniform(size=(n, len(ATTRIBUTES)))
    os.makedirs(out, exist_ok=True)
    draw_rng = np.random.default_rng(SEED + 1)
    paths = []
    for index, row in enumerate(strengths):
        image = draw_shape(row, draw_rng)
        paths.append(os.path.join(out, f"{index}.png"))
        if not os.path.exists(paths[-1]):
            image.save(paths[-1])
    pool, test = np.arange(2 * n // 3), np.arange(2 * n // 3, n)
    return paths, strengths, list(ATTRIBUTES), pool, test, TIE_THRESHOLD, None


def compare(sa, sb, tie: float):
    return np.where(np.abs(sa - sb) <= tie, 0.5, np.where(sa > sb, 1.0, 0.0))


def test_pairs(strength: np.ndarray, test: np.ndarray, tie: float) -> Pairs:
    i, j = np.triu_indices(len(test), 1)
    target = compare(strength[test[i]], strength[test[j]], tie)
    keep = target != 0.5
    return Pairs(i[keep], j[keep], target[keep].astype(np.float32))


def simulate(pool_features, strength, test_features, truth: Pairs, strategy: str, budget: int, every: int,
             checkpoints: list[int], noise: float, tie: float, seed: int) -> dict[int, float]:
    """Test accuracy at each checkpoint of one simulated annotation session."""
    rng, picking = np.random.default_rng(seed + 1000), []
    ranker, selector = LinearRanker(pool_features), Selector(len(pool_features), strategy, seed)
    taken, a, b, target, curve, scores = set(), [], [], [], {}, None
    for answered in range(budget + 1):
        if answered and answered % every == 0:
            ranker.fit(Pairs(np.array(a), np.array(b), np.array(target, np.float32)))
            scores = ranker.scores()
            if answered in checkpoints:
                curve[answered] = pair_accuracy(ranker.scores(test_features), truth)
        if answered == budget:
            break
        started = time.perf_counter()
        i, j = selector.pick(scores, taken, answered)
        picking.append(time.perf_counter() - started)
        taken.add(frozenset((i, j)))
        label = float(compare(strength[i], strength[j], tie))
        if label != 0.5 and rng.uniform() < noise:
            label = 1.0 - label
        a.append(i), b.append(j), target.append(label)
    PICK_SECONDS.extend(picking)
    return curve


PICK_SECONDS: list[float] = []  # every pick of every session


def next_pair_latency(images: int = 20000, answers: int = 5000, picks: int = 200) -> np.ndarray:
    """Seconds per /api/next of a Session (offered and answered pairs looked up, active pick) over a folder of
    `images` names holding `answers` answers, its ranker fitted: what the page waits for."""
    import tempfile

    from relrank.annotate.answers import HEADER, AnswerLog
    from relrank.annotate.folder import Folder
    from relrank.annotate.session import Session

    root = tempfile.mkdtemp(prefix="relrank-latency-")
    names = tuple(f"{k:06d}.jpg" for k in range(images))
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, images, answers), rng.integers(0, images, answers)
    with open(os.path.join(root, "pairs.csv"), "w") as f:
        f.write(",".join(HEADER) + "\n")
        f.writelines(f"{names[x]},{names[y]},attr,more,,\n" for x, y in zip(a, b) if x != y)
    folder = Folder(root, root, names, ())
    session = Session(folder, AnswerLog(folder.pairs_csv, set(names)), ["attr"], warmup=0)
    session.scores["attr"] = rng.normal(size=images)
    seconds = []
    for _ in range(picks):
        started = time.perf_counter()
        session.next_pair("attr")
        seconds.append(time.perf_counter() - started)
    return np.array(seconds)


def answers_to_reach(curve: dict[int, float], level: float) -> float | None:
    """The fewest answers at which `curve` reaches `level`, interpolated between checkpoints."""
    points = sorted(curve.items())
    for (n0, y0), (n1, y1) in zip([(0, -np.inf)] + points, points):
        if y1 >= level:
            return float(n1) if y0 == -np.inf else n0 + (n1 - n0) * (level - y0) / (y1 - y0)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["pubfig", "synthetic"], default="pubfig")
    parser.add_argument("--pubfig", default=os.path.join(REPO, "..", "shared", "data", "pubfig"))
    parser.add_argument("--attrs", default="", help="comma-separated attributes (default: all)")
    parser.add_argument("--budget", type=int, default=2000, help="answers per session (default: 2000)")
    parser.add_argument("--retrain_every", type=int, default=20, help="answers between refits (default: 20)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.1, help="share of flipped answers (default: 0.1)")
    parser.add_argument("--model", default="", help="the feature network (default: relrank annotate's)")
    parser.add_argument("--weights", default="", help="its pretrained weights (default: relrank annotate's, the "
                        "packaged EfficientNet-Lite0 where installed)")
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--features", choices=["network", "release"], default="network",
                        help="network: the tool's (--model, --weights); release: PubFig's GIST + colour features")
    parser.add_argument("--plot", default="", help="write the curves to this PNG")
    parser.add_argument("--images", type=int, default=SYNTHETIC_IMAGES, help="synthetic: how many images "
                        f"(default: {SYNTHETIC_IMAGES})")
    parser.add_argument("--images_dir", default=os.path.join(os.path.expanduser("~"), ".cache", "relrank",
                                                             "active-synthetic"),
                        help="where the synthetic images are written (default: ~/.cache/relrank/active-synthetic)")
    parser.add_argument("--tuning", action="store_true", help="evaluate on a held-out fifth of the pool instead of "
                        "the test images (for choosing settings)")
    parser.add_argument("--no_latency", action="store_true", help="skip timing /api/next on a large folder")
    parser.add_argument("--no_write", action="store_true", help="do not append rows to RESULTS.md")
    args = parser.parse_args()

    paths, strengths, attributes, pool, test, tie, release = (
        pubfig(args.pubfig) if args.dataset == "pubfig" else synthetic(args.images_dir, args.images))
    if args.tuning:  # evaluate on a held-out fifth of the pool: choices are made here, never on the test images
        held = np.random.default_rng(0).permutation(pool)
        test, pool = np.sort(held[: len(pool) // 5]), np.sort(held[len(pool) // 5 :])
    if args.attrs:
        keep = [attributes.index(a) for a in args.attrs.split(",")]
        strengths, attributes = strengths[:, keep], [attributes[k] for k in keep]
    started = time.perf_counter()
    if args.features == "release":
        if release is None:
            raise SystemExit("--features=release: only PubFig comes with features of its own")
        table = release
    else:
        model, weights, warning = default_backbone(args.model, args.weights)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        table = compute_features(paths, model, weights or None, args.image_size)
    feature_seconds = time.perf_counter() - started
    checkpoints = sorted({n for n in (40, 100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, args.budget)
                          if n <= args.budget and n % args.retrain_every == 0})
    curves = {s: np.zeros((args.seeds, len(attributes), len(checkpoints))) for s in ("random", "active")}
    started = time.perf_counter()
    for k, attr in enumerate(attributes):
        truth = test_pairs(strengths[:, k], test, tie)
        for strategy in curves:
            for seed in range(args.seeds):
                curve = simulate(table[pool], strengths[pool, k], table[test], truth, strategy, args.budget,
                                 args.retrain_every, checkpoints, args.noise, tie, seed)
                curves[strategy][seed, k] = [curve[n] for n in checkpoints]
        print(f"{attr}: random {curves['random'][:, k, -1].mean():.2f}, active {curves['active'][:, k, -1].mean():.2f} "
              f"at {args.budget} answers", file=sys.stderr)
    simulate_seconds = time.perf_counter() - started
    sessions = 2 * args.seeds * len(attributes)

    mean = {s: c.mean(axis=1) for s, c in curves.items()}  # [seeds, checkpoints]: mean over attributes
    print(f"\n{args.dataset}: test accuracy (%, mean over {len(attributes)} attributes; mean +- std over "
          f"{args.seeds} seeds) against answers; {args.noise:.0%} flipped answers")
    print("| answers | random | active |\n| --- | --- | --- |")
    for c, n in enumerate(checkpoints):
        print(f"| {n} | {mean['random'][:, c].mean():.2f} +- {mean['random'][:, c].std():.2f} | "
              f"{mean['active'][:, c].mean():.2f} +- {mean['active'][:, c].std():.2f} |")
    level = mean["random"][:, -1].mean()
    reached = answers_to_reach(dict(zip(checkpoints, mean["active"].mean(axis=0))), level)
    saving = (f"active reaches random's {args.budget}-answer accuracy ({level:.2f}) at "
              f"{reached:.0f} answers: {args.budget / reached:.1f}x fewer" if reached else
              f"active does not reach random's {args.budget}-answer accuracy ({level:.2f}) within {args.budget}")
    per_fit = (simulate_seconds - sum(PICK_SECONDS)) / sessions / (args.budget / args.retrain_every)
    picks = np.array(PICK_SECONDS) * 1000
    print(f"\n{saving}\nfeatures: {feature_seconds:.1f} s; simulation: {simulate_seconds:.1f} s for {sessions} "
          f"sessions; "
          f"refit (and its evaluation): {per_fit * 1000:.1f} ms; pick: median {np.median(picks):.2f} ms, max "
          f"{picks.max():.2f} ms (pool of {len(pool)} images)")
    if not args.no_latency:
        latency = next_pair_latency() * 1000
        print(f"/api/next on 20,000 images with 5,000 answers: median {np.median(latency):.1f} ms, 99th percentile "
              f"{np.percentile(latency, 99):.1f} ms, max {latency.max():.1f} ms")

    if args.plot:
        plot(args, checkpoints, mean, attributes)
    if not args.no_write:
        write_rows(args, checkpoints, mean, saving)


def plot(args, checkpoints, mean, attributes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for strategy, colour in (("random", "tab:gray"), ("active", "tab:blue")):
        m, s = mean[strategy].mean(axis=0), mean[strategy].std(axis=0)
        ax.plot(checkpoints, m, "o-", color=colour, label=strategy, markersize=3)
        ax.fill_between(checkpoints, m - s, m + s, color=colour, alpha=0.2)
    ax.set_xlabel("answers")
    ax.set_ylabel(f"test accuracy (%), mean of {len(attributes)} attributes")
    ax.set_title(f"{args.dataset}: active vs random pairs ({args.seeds} seeds, {args.noise:.0%} flipped)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot)
    print(f"wrote {args.plot}")


def write_rows(args, checkpoints, mean, saving) -> None:
    command = " ".join(["python benchmarks/active.py"] + [a for a in sys.argv[1:] if not a.startswith(
        ("--pubfig", "--images_dir", "--no_write", "--plot"))])
    shown = [n for n in checkpoints if n in (100, 200, 500, 1000, 2000) or n == checkpoints[-1]]
    with open(RESULTS, "a") as f:
        for strategy in ("random", "active"):
            m = mean[strategy]
            curve = " ".join(f"{n}: {m[:, checkpoints.index(n)].mean():.2f}" for n in shown)
            f.write(f"| {datetime.date.today()} | {args.dataset}, annotation simulated ({strategy} pairs, "
                    f"{args.noise:.0%} flipped) | `{command}` | {args.seeds} seeds | **{m[:, -1].mean():.2f}** +- "
                    f"{m[:, -1].std():.2f} at {checkpoints[-1]} answers | accuracy at N answers: {curve}"
                    f"{'; ' + saving if strategy == 'active' else ''} | | {machine()} | {commit()} |\n")
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
