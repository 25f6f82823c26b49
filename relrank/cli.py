"""Every command-line front end: train.py, evaluate.py, `python -m relrank {score,saliency,embed}` and
`python -m relrank.weights convert`. Each parses its flags and calls the library; errors print as one line.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import json
import logging
import math
import os
import sys
import time

from relrank.config import DATASETS, MODEL_PRESETS, NORMS, OPTIMIZERS, SCHEDULES, make_config
from relrank.configs import RECIPES, recipe_regime
from relrank.errors import Interrupted, UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _quiet_libraries() -> None:
    logging.getLogger("absl").setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _use_compilation_cache() -> None:
    """Keep compiled XLA programs between runs (JAX's persistent cache): a rerun skips most compile time.

    In $JAX_COMPILATION_CACHE_DIR when set, else ~/.cache/relrank/xla (under $XDG_CACHE_HOME when set).
    Set through JAX's environment variables, read when JAX is first imported: nothing imports it here.
    """
    cache_root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(cache_root, "relrank", "xla"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


RANDOM_WEIGHTS = "random"  # --weights=random: the paper's VGG-16 from random init, on purpose
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command
EXIT_DID_NOT_LEARN = 3  # the run ended, but its network learned nothing (relrank/learning.py)


def _run(main, argv) -> int:
    """Run `main`: a UserError becomes a one-line message and exit status 2; Ctrl-C or SIGTERM, status 130;
    otherwise the status `main` returns (0 if None)."""
    from relrank.signals import sigterm_as_keyboard_interrupt

    _quiet_libraries()
    _use_compilation_cache()
    try:
        with sigterm_as_keyboard_interrupt():
            status = main(argv)
    except Interrupted as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RuntimeError as error:
        if "Unable to initialize backend" not in str(error):
            raise
        asked = os.environ.get("JAX_PLATFORMS", "")
        print(f"error: JAX cannot use the accelerator {'JAX_PLATFORMS=' + asked + ' asks for' if asked else 'asked for'}: "
              f"{str(error).splitlines()[0][:200]}; unset JAX_PLATFORMS to use what this machine has, or install "
              f"JAX for it (README: GPUs and TPUs)", file=sys.stderr)
        return EXIT_USER_ERROR
    return status or 0


def _recipes_help() -> str:
    recipes = "\n".join(f"  {name:8s} {about}" for name, about in RECIPES.items())
    datasets = "\n".join(f"  {name:10s} recipe={spec.recipe} epochs={spec.epochs}" for name, spec in DATASETS.items())
    return (f"recipes (--config=NAME; files in relrank/configs/, a flag overrides any field they set):\n{recipes}\n\n"
            f"datasets, with the recipe used without --config and the paper's epochs:\n{datasets}")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a relative-attribute ranker (VGG-16 + Dense(1), RankNet loss) on pairs of images.",
        epilog=_recipes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--dataset", default="synthetic", help="dataset name (default: synthetic, the embedded demo dataset)")
    add("--config", dest="recipe", default=None, help=f"named recipe ({', '.join(RECIPES)}) or a recipe .py file "
        "(default: the dataset's, listed below)")
    add("--attr", default=None, help="attribute to rank by (default: the dataset's first); 'all' or a comma-separated "
        "list trains one network with one ranking output per attribute")
    add("--workdir", default=None, help="where checkpoints, metrics.jsonl and curves.png go (default: runs/DATASET/ATTR); "
        "rerunning on a workdir with a checkpoint resumes it")
    add("--seeds", type=int, default=1, help="train this many runs, seeds --seed, --seed+1, ..., in WORKDIR/seed_N "
        "(evaluate.py then reports mean +- std; default: 1)")
    add("--val_fraction", type=float, help="hold out this fraction (0 < f <= 0.5) of the training images, with all "
        "their pairs, as a validation split that picks the best checkpoint (default: 0, none)")
    add("--epochs", type=int, help="passes over the training pairs")
    add("--batch_pairs", type=int, help="pairs per training step (2x as many images); divisible by the device count")
    add("--batch_images", type=int, help="instead of --batch_pairs: this many images per step, drawn at random, with "
        "every annotated pair among them (for datasets compared all-to-all: OSR, PubFig); default: 0, pair batches")
    add("--eval_every_epochs", type=int, help="evaluate and checkpoint every N epochs, and at the end (default: 1)")
    add("--backbone_lr", type=float, help="(peak) learning rate of the VGG-16 layers (0 freezes them)")
    add("--head_lr", type=float, help="(peak) learning rate of the Dense(1) ranking layer")
    add("--weight_decay", type=float, help="weight decay of all weights, not biases: an L2 penalty in the loss "
        "(rmsprop, sgd) or decoupled in the update (adamw)")
    add("--optimizer", choices=OPTIMIZERS, help="rmsprop (Lasagne's, the paper's; default), adamw or sgd (with --momentum)")
    add("--momentum", type=float, help="sgd's momentum (default: 0.9)")
    add("--schedule", choices=SCHEDULES, help="learning rate over the run: constant (default), cosine or linear "
        "decay to 0, after the warmup")
    add("--warmup_fraction", type=float, help="fraction of the run's steps with a linear warmup from 0 (default: 0)")
    add("--crop_min_scale", type=float, help="augmentation: random resized crops of this much of the image's area "
        "up to all of it, aspect 3/4..4/3 (default: 1, no crops)")
    add("--flip", action="store_const", const=True, default=None, help="augmentation: random horizontal flips")
    add("--color_jitter", type=float, help="augmentation: brightness and contrast factors in 1 +- this (default: 0)")
    add("--load_size", type=int, help="side at which training images are kept in memory, for crops to draw on "
        "(default: --image_size); evaluation always uses --image_size")
    add("--seed", type=int, help="seed of initialisation, data order and dropout (default: 0)")
    add("--model", choices=sorted(MODEL_PRESETS), help="vgg16 (the paper's network), vgg16_small (1/8 width) or vgg_cpu "
        "(8 convolutions with GroupNorm at 64 px, for training from scratch on CPUs)")
    add("--block_widths", type=_ints, help="channels of the 5 convolution blocks, e.g. 16,32,64,128,128 (default: the model's)")
    add("--block_depths", type=_ints, help="convolutions per block, e.g. 2,2,3,3,3 for VGG-16 (default: the model's)")
    add("--fc_width", type=int, help="width of fc6 and fc7 (default: the model's)")
    add("--dropout", type=float, help="dropout rate after fc6 and fc7 (default: the model's)")
    add("--norm", choices=NORMS, help="normalisation after each convolution (default: the model's)")
    add("--zero_head", action="store_const", const=True, default=None, help="start the ranking layer at zero (all "
        "scores equal) instead of Glorot-uniform; steadier from random init (default: off, the paper's)")
    add("--weights", help="pretrained ImageNet VGG-16 file (torchvision .pth/.safetensors, timm .safetensors, "
        "Lasagne vgg16.pkl); its preprocessing is used and saved with the checkpoints. Default: random init, except "
        f"that full VGG-16 (the paper recipe's) is refused without weights unless --weights={RANDOM_WEIGHTS}")
    add("--method", choices=["deep", "ranksvm"], help="deep: fine-tune VGG-16 end to end (default); ranksvm: "
        "the paper's baseline, a RankSVM with similarity constraints on frozen features")
    add("--ranksvm_features", choices=["dataset", "fc7"], help="ranksvm features: the dataset's own (PubFig/OSR "
        "GIST, default) or fc7 of the backbone given by --weights")
    add("--ranksvm_c", type=float, help="ranksvm cost of each violated pair (default: 0.1, Parikh & Grauman's)")
    add("--image_size", type=int, help="input side in pixels, a multiple of 32 (default: 224 for vgg16, 32 for vgg16_small)")
    add("--compute_dtype", choices=["float32", "bfloat16"], help="dtype of the forward/backward pass; parameters stay float32")
    add("--input_pipeline", choices=["auto", "memory", "streaming"], help="memory: decode every image once into a "
        "table in RAM; streaming: grain worker processes read and decode each batch's images from the prepared "
        "dataset (for datasets larger than memory); auto (default): memory when the tables fit in a quarter of the "
        "RAM (at most 16 GiB). Both give the same batches")
    add("--data_workers", type=int, help="worker processes of the streaming pipeline (default: 0, one per core but "
        "one, at most 8)")
    add("--eval_batch_images", type=int, help="images per scoring batch at evaluation (default: 128)")
    add("--checkpoint_every_steps", type=int, help="save a checkpoint every N steps, besides each epoch's end (default: 500)")
    add("--keep_checkpoints", type=int, help="how many recent checkpoints to keep; the best one is kept too (default: 3)")
    add("--log_every_steps", type=int, help="steps between metrics.jsonl rows (default: 10)")
    add("--stop_after_steps", type=int, default=None, help="stop after N more steps with a checkpoint (rerun to continue)")
    add("--extend", action="store_true", help="resume a run with a larger --epochs on purpose (its learning-rate "
        "schedule stretches to the new length); any other change of settings on resume is refused")
    add("--data_dir", default=None, help="TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    add("--manual_dir", default=None, help="folder holding the dataset's source files "
        "(default: DATA_DIR/downloads/manual/<builder>); the error for a missing file says what to download")
    add("--split", type=int, help="zappos1 only: which of the 10 train/test splits (default: 1)")
    add("--equal_pairs", action="store_const", const=True, default=None,
        help="zappos1/zappos2: also train on the release's 'equal' pairs (target 0.5)")
    add("--unique_pairs", action="store_const", const=True, default=None, help="pairs_csv: refuse a pair annotated "
        "more than once (default: crowd votes are welcome; training uses every vote, test pairs count by majority)")
    add("--test_pairs_fraction", type=float, help="evaluate a seeded random fraction of the test pairs "
        "(the paper used 0.05 for OSR; default: 1, all of them)")
    hosts = parser.add_argument_group(
        "several processes (hosts)", "jax.distributed's own arguments; without them a SLURM, Open MPI or TPU pod "
        "environment is detected, else the run is one process. Every process gets the same flags but its own "
        "--process_id; process 0 writes the logs (see the README's launch lines)")
    hosts.add_argument("--coordinator_address", default=None, help="HOST:PORT of process 0, which serves as coordinator")
    hosts.add_argument("--num_processes", type=int, default=None, help="how many processes train together")
    hosts.add_argument("--process_id", type=int, default=None, help="this process's index, 0 .. num_processes-1")
    hosts.add_argument("--coordinator_timeout", type=float, default=300, help="seconds to wait for the coordinator "
                       "and the other processes (default: 300)")
    return parser


def _attrs(argument: str | None, data) -> tuple[str, ...]:
    """--attr resolved against the dataset: one name, a comma-separated list, or 'all'."""
    from relrank.data import check_attribute

    if argument == "all":
        return tuple(data.attributes)
    attrs = tuple(a.strip() for a in (argument or data.attributes[0]).split(",") if a.strip())
    if not attrs:
        raise UserError("--attr is empty; give an attribute, a comma-separated list, or all")
    for attr in attrs:
        check_attribute(data, attr)
    if len(set(attrs)) < len(attrs):
        raise UserError(f"--attr names an attribute twice: {argument}")
    return attrs


def _train(argv) -> int:
    from relrank import distributed
    from relrank.data import PairStructure, load_dataset_for
    from relrank.ranksvm import train_ranksvm
    from relrank.trainer import train
    from relrank.weights import check_weights
    from relrank.workdir import check_usable

    args = train_parser().parse_args(argv)
    launch = ("coordinator_address", "num_processes", "process_id", "coordinator_timeout")
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("attr", "workdir", "stop_after_steps", "seeds", "extend") + launch}
    random_on_purpose = overrides["weights"] == RANDOM_WEIGHTS
    if random_on_purpose:
        overrides["weights"] = None
    base = make_config(**overrides)  # validates flags before any data work
    if base.method == "deep" and base.model == "vgg16" and not base.weights and not random_on_purpose:
        raise UserError(f"--dataset={base.dataset} trains the paper's VGG-16 at {base.image_size} px, which is meant to "
                        f"start from ImageNet weights (from random init on a CPU it runs for days): give "
                        f"--weights=FILE (see the README), or --config=scratch to learn from scratch on a CPU, or "
                        f"--weights={RANDOM_WEIGHTS} to train VGG-16 from random init anyway")
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    if args.stop_after_steps is not None and args.stop_after_steps < 1:
        raise UserError(f"--stop_after_steps must be at least 1, got {args.stop_after_steps}")
    if base.weights:
        check_weights(base)  # a bad file is one line before any data work
    if args.workdir:
        check_usable(args.workdir)
        check_seed_layout(args.workdir, args.seeds)
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id, args.coordinator_timeout)
    data = distributed.first_on_main(lambda: load_dataset_for(base), "prepare the dataset")
    attrs = _attrs(args.attr, data)
    if base.method == "deep":
        structure = PairStructure.of(data.pairs_of("train", attrs))
        base = make_config(**overrides, pairs=structure)  # recipes adapt to how densely the pairs cover the images
        if distributed.is_main():
            chosen = recipe_regime(base.recipe, base.dataset, structure)
            print(f"{base.dataset}: {structure.describe()}" + (f"; recipe {base.recipe}: {chosen} settings" if chosen
                                                                 else ""), file=sys.stderr)
    name = "all" if args.attr == "all" else "+".join(attrs)
    root = args.workdir or os.path.join("runs", base.dataset, name)
    if not args.workdir:  # a --workdir was checked before the data work
        check_seed_layout(root, args.seeds)
    status = 0
    for seed in range(base.seed, base.seed + args.seeds):
        config = dataclasses.replace(base, attr=",".join(attrs), seed=seed)
        workdir = os.path.join(root, f"seed_{seed}") if args.seeds > 1 else root
        if config.method == "ranksvm":
            summary = train_ranksvm(config, workdir, data=data)
            _print_result(config, summary, "RankSVM test accuracy", workdir)
            continue
        summary = train(config, workdir, stop_after_steps=args.stop_after_steps, data=data, extend=args.extend)
        if distributed.is_main():
            _print_result(config, summary, "test accuracy", workdir,
                          f" at step {summary['final_step']} ({summary['wall_seconds']:.0f} s; compile "
                          f"{summary['compile_seconds']:.1f} s)")
        if summary.get("did_not_learn"):
            status = EXIT_DID_NOT_LEARN
    return status


def check_seed_layout(root: str, seeds: int) -> None:
    """A run and seed_N/ runs never share a folder: --seeds>1 into a run's workdir, or one seed into a folder of
    seeds, is a one-line error."""
    from relrank.runs import is_run

    if seeds > 1 and is_run(root):
        raise UserError(f"{root} holds a single run; --seeds={seeds} would put seed_N/ runs beside it: "
                        f"give another --workdir")
    if seeds == 1 and os.path.isdir(root) and not is_run(root) and any(
            is_run(os.path.join(root, d)) for d in os.listdir(root) if d.startswith("seed_")):
        raise UserError(f"{root} holds seed_N/ runs of --seeds; resume them with the same --seeds, or give another "
                        f"--workdir for a single run")


def _print_result(config, summary: dict, what: str, workdir: str, details: str = "") -> None:
    accuracy = summary["test_accuracy"]
    failure = summary.get("did_not_learn")
    if failure:
        from relrank.learning import described

        details += f"; did not learn: {described(failure)} (see above)"
    if accuracy is None:
        print(f"{config.dataset}/{config.attr}: {what} not evaluated yet{details} -> {workdir}")
        return
    if not math.isfinite(accuracy):
        print(f"{config.dataset}/{config.attr}: nothing to evaluate, every test pair is a tie{details} -> {workdir}")
        return
    per_attr = summary.get("test_accuracy_per_attr")
    if per_attr:
        for attr, value in per_attr.items():
            print(f"  {attr:24s} {value:6.2f}%" if math.isfinite(value) else f"  {attr:24s} no pairs to evaluate (all ties)")
        print(f"{config.dataset}/{len(per_attr)} attributes: mean {what} {accuracy:.2f}%{details} -> {workdir}")
    else:
        print(f"{config.dataset}/{config.attr}: {what} {accuracy:.2f}%{details} -> {workdir}")


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Evaluate trained rankers: percentage of correctly ordered test pairs "
        "(ground-truth ties skipped, predicted ties counted wrong), one row per attribute.",
    )
    add = parser.add_argument
    add("--workdir", required=True, help="a run's workdir, or a folder of runs (per attribute or seed, searched "
        "recursively); runs of the same attribute with different seeds are reported as mean +- std")
    add("--checkpoint", default="latest", help="latest (default), best (highest validation accuracy, or test accuracy "
        "for runs without --val_fraction) or a step number")
    add("--split", default="test", help="pair set to evaluate: test (default), val (the run's validation split) or "
        "another pair set of the dataset")
    add("--data_dir", default="", help="TFDS data directory, if not the one the run was trained with")
    add("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def _evaluate(argv) -> None:
    import numpy as np

    from relrank.runs import dataset_means, evaluate_run, find_runs, pool_seeds

    args = evaluate_parser().parse_args(argv)
    results = [row for run in find_runs(args.workdir)
               for row in evaluate_run(run, args.checkpoint, args.split, args.data_dir)]
    groups = pool_seeds(results)
    means = dataset_means(groups)
    if args.json:
        print(json.dumps(dict(results=results, attributes=groups, means=means), indent=2))
        return
    labelled = any(g["label"] for g in groups)
    print(f"{'dataset':10s} {'attribute':20s} {'seeds':>5s} {'pairs':>9s} {'accuracy':>16s}"
          + ("  settings" if labelled else ""))
    for g in groups:
        runs = len(g["seeds"])
        spread = f" +- {g['std']:.2f}" if runs > 1 else ""
        accuracy = f"{g['mean']:7.2f}%{spread:>8s}" if np.isfinite(g["mean"]) else f"{'no pairs':>16s}"
        note = f"  DID NOT LEARN ({g['did_not_learn']} of {runs} run{'s' if runs > 1 else ''})" if g["did_not_learn"] else ""
        print(f"{g['dataset']:10s} {g['attr']:20s} {runs:5d} {g['num_pairs']:9d} {accuracy}"
              + (f"  {g['label']}" if labelled else "") + note)
    for m in means:
        attributes = f"mean ({m['attributes']} attributes)"
        print(f"{m['dataset']:10s} {attributes:20s} {'':5s} {'':9s} {m['mean']:7.2f}%{'':8s}"
              + (f"  {m['label']}" if labelled else ""))
    steps = sorted({r["step"] for r in results})
    seeds = " (+- std over seeds, numpy ddof=0)" if any(len(g["seeds"]) > 1 for g in groups) else ""
    print(f"checkpoint {args.checkpoint}: step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))}{seeds}")
    for g in groups:
        if not np.isfinite(g["mean"]):
            print(f"{g['dataset']}/{g['attr']}: nothing to evaluate: every {args.split} pair is a tie (ties are skipped)")
    for workdir, why in sorted({(r["workdir"], r["did_not_learn"]) for r in results if r["did_not_learn"]}):
        print(f"{workdir}: did not learn: {why}")


def image_paths(inputs: list[str]) -> list[str]:
    """Files given, plus the image files inside folders given (recursively, sorted)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for folder, _, files in sorted(os.walk(item)):
                paths += [os.path.join(folder, f) for f in sorted(files)  # regular files only: a pipe would block
                          if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))]
        elif os.path.isfile(item):
            paths.append(item)
        elif os.path.exists(item):
            raise UserError(f"{item} is not a regular file (a pipe, socket or device); give image files or folders")
        else:
            raise UserError(f"no such file or folder: {item}")
    if not paths:
        raise UserError("no images found in " + ", ".join(inputs))
    return paths


def check_output_file(path: str, flag: str, example: str, formats: tuple[str, ...] = ()) -> None:
    """A one-line error before any work if `path` cannot be written as a file (of one of `formats`, its extensions)."""
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if formats and extension not in formats:
        common = [f for f in ("png", "jpg", "pdf", "svg", "webp", "tif") if f in formats]
        raise UserError(f"{flag} {path}: {'.' + extension if extension else 'no extension'} is not an image format "
                        f"relrank can write; use {', '.join('.' + f for f in common)} or another of "
                        f"{len(formats)} formats")
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a folder; give a file name, e.g. {os.path.join(path, example)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{flag} {path}: folder {folder} is not writable")


def sheet_formats() -> tuple[str, ...]:
    """Extensions PIL writes (the ranked sheet)."""
    from PIL import Image

    Image.init()
    return tuple(sorted({ext.lstrip(".") for ext, kind in Image.registered_extensions().items() if kind in Image.SAVE}))


def figure_formats() -> tuple[str, ...]:
    """Extensions matplotlib writes (saliency and embedding figures)."""
    from matplotlib.figure import Figure

    return tuple(sorted(Figure().canvas.get_supported_filetypes()))


def _score(args) -> None:
    import numpy as np

    from relrank.figures import ranking_sheet
    from relrank.ranker import load

    check_output_file(args.out, "--out", "ranking.csv")
    if args.sheet:
        check_output_file(args.sheet, "--sheet", "ranking.png", sheet_formats())
    ranker = load(args.workdir, args.checkpoint)
    columns = [ranker.output(args.attr)] if args.attr or len(ranker.attrs) == 1 else list(range(len(ranker.attrs)))
    if args.sheet and len(columns) > 1:
        raise UserError(f"--sheet draws one attribute; choose one with --attr ({', '.join(ranker.attrs)})")
    kept, all_values, unreadable = ranker.score_files(image_paths(args.inputs))
    if unreadable:
        print(f"skipped {len(unreadable)} unreadable file(s):", file=sys.stderr)
        for why in unreadable[:10]:
            print(f"  {why}", file=sys.stderr)
        if len(unreadable) > 10:
            print(f"  ... and {len(unreadable) - 10} more", file=sys.stderr)
    if not kept:
        raise UserError("none of the images could be read")
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "score", "rank"] if len(columns) == 1 else ["image", "attribute", "score", "rank"])
        for column in columns:
            values = all_values[:, column]
            for rank, i in enumerate(np.argsort(-values), start=1):
                label = [] if len(columns) == 1 else [ranker.attrs[column]]
                writer.writerow([kept[i], *label, f"{values[i]:.6g}", rank])
    named = ", ".join(ranker.attrs[c] for c in columns)
    print(f"scored {len(kept)} images by {named} -> {args.out} (rank 1 = most)")
    if args.sheet:
        title = f"{ranker.config.dataset} / {ranker.attrs[columns[0]]}"
        ranking_sheet(kept, values, args.sheet, names=[os.path.relpath(k) for k in kept], title=title)
        print(f"sheet, weakest (top left) to strongest -> {args.sheet}")


def _saliency(args) -> None:
    from relrank.figures import saliency_figure
    from relrank.images import to_uint8_rgb
    from relrank.ranker import load
    from relrank.saliency import pair_saliency

    check_output_file(args.out, "--out", "saliency.png", figure_formats())
    if not math.isfinite(args.sigma) or args.sigma < 0:
        raise UserError(f"--sigma must be a number >= 0 (pixels of smoothing), got {args.sigma}")
    ranker = load(args.workdir, args.checkpoint)
    for path in (args.image_a, args.image_b):
        if not os.path.isfile(path):
            raise UserError(f"no such image file: {path}")
    a, b = (to_uint8_rgb(path, ranker.config.image_size) for path in (args.image_a, args.image_b))
    attr = ranker.attrs[ranker.output(args.attr)]
    p, map_a, map_b = pair_saliency(ranker, a, b, sigma=args.sigma, attr=attr)
    name_a, name_b = os.path.basename(args.image_a), os.path.basename(args.image_b)
    saliency_figure(a, b, map_a, map_b, p, args.out, attr, names=(name_a, name_b))
    print(f"P({name_a} shows more {attr} than {name_b}) = {p:.3f} -> {args.out}")


def _embed(args) -> None:
    import numpy as np

    from relrank.data import load_dataset_for
    from relrank.embedding import before_and_after, tsne
    from relrank.figures import embedding_figure
    from relrank.ranker import load

    if importlib.util.find_spec("sklearn") is None:
        raise UserError("embed draws t-SNE with scikit-learn, which is not installed: pip install 'relrank[viz]' "
                        "(or pip install scikit-learn)")
    if args.max_images < MIN_EMBEDDED:
        raise UserError(f"--max_images must be at least {MIN_EMBEDDED} (t-SNE needs a few points), got {args.max_images}")
    check_output_file(args.out, "--out", "embedding.png", figure_formats())
    ranker = load(args.workdir, args.checkpoint)
    attr = ranker.attrs[ranker.output(args.attr)]
    data = load_dataset_for(ranker.config)
    ids = data.pairs("test", attr).images()[: args.max_images]
    if len(ids) < MIN_EMBEDDED:
        raise UserError(f"{ranker.config.dataset}/{attr} has {len(ids)} test images; t-SNE needs at least {MIN_EMBEDDED}")
    images = data.load_images(ids, ranker.config.image_size)
    before, after = before_and_after(ranker, images)
    rank = len(ids) - np.argsort(np.argsort(ranker.score(images, attr)))  # 1 = most, as score's CSV
    embedding_figure(tsne(before), tsne(after), rank, args.out, f"{ranker.config.dataset} / {attr}", attr)
    print(f"t-SNE of {len(ids)} test images before and after fine-tuning -> {args.out}")


MIN_EMBEDDED = 5  # images t-SNE is drawn for, at least


def use_parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m relrank",
                                   description="Use a trained ranker: score images, saliency maps, embeddings.")
    commands = main.add_subparsers(dest="command", required=True)

    def command(name, function, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--workdir", required=True, help="a trained run's workdir")
        sub.add_argument("--checkpoint", default="latest", help="latest (default), best or a step number")
        sub.add_argument("--attr", default=None, help="which attribute of a run trained on several (default: its only "
                         "one; score: all of them, one row per image and attribute)")
        sub.set_defaults(function=function)
        return sub

    s = command("score", _score, "Score images (files or folders) and write image, score and rank to a CSV.")
    s.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    s.add_argument("--out", default="ranking.csv", help="the CSV to write (default: ranking.csv)")
    s.add_argument("--sheet", default="", help="also draw the images from weakest to strongest into this PNG")
    s = command("saliency", _saliency, "Saliency maps of P(a shows more than b) for two images (paper fig. 7).")
    s.add_argument("image_a")
    s.add_argument("image_b")
    s.add_argument("--out", default="saliency.png", help="the PNG to write (default: saliency.png)")
    s.add_argument("--sigma", type=float, default=3.0, help="Gaussian smoothing in pixels (default: 3)")
    s = command("embed", _embed, "t-SNE of fc7 features of test images before/after fine-tuning (paper fig. 5).")
    s.add_argument("--out", default="embedding.png", help="the PNG to write (default: embedding.png)")
    s.add_argument("--max_images", type=int, default=500, help="at most this many test images (default: 500)")
    return main


def _use(argv) -> None:
    args = use_parser().parse_args(argv)
    args.function(args)


def weights_parser() -> argparse.ArgumentParser:
    from relrank.weights import SUPPORTED

    parser = argparse.ArgumentParser(prog="python -m relrank.weights",
                                     description="Convert pretrained VGG-16 weights to relrank's .safetensors layout.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert_parser = commands.add_parser("convert", help="convert IN (any supported kind) to OUT.safetensors")
    convert_parser.add_argument("source", help=f"the weights file: {SUPPORTED}")
    convert_parser.add_argument("target", help="where to write the .safetensors file")
    return parser


def _weights(argv) -> None:
    from relrank.weights import convert

    args = weights_parser().parse_args(argv)
    check_output_file(args.target, "target", "vgg16.safetensors")
    start = time.perf_counter()
    try:
        convert(args.source, args.target)
    except Exception as error:  # OSError, SafetensorError: a read-only place, a full disk
        if isinstance(error, UserError):
            raise
        raise UserError(f"cannot write {args.target}: {getattr(error, 'strerror', None) or error}") from None
    print(f"wrote {args.target} ({time.perf_counter() - start:.1f} s)")


def train_main(argv=None) -> int:
    return _run(_train, argv)


def evaluate_main(argv=None) -> int:
    return _run(_evaluate, argv)


def use_main(argv=None) -> int:
    return _run(_use, argv)


def weights_main(argv=None) -> int:
    return _run(_weights, argv)
