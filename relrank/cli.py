"""Command-line front ends of train.py and evaluate.py: flags -> Config -> library calls."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from relrank.config import DATASET_DEFAULTS, MODEL_PRESETS, make_config
from relrank.errors import Interrupted, UserError


def _quiet_libraries() -> None:
    logging.getLogger("absl").setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command


def _run(main, argv) -> int:
    """Run `main`: a UserError becomes a one-line message and exit status 2; Ctrl-C or SIGTERM, status 130."""
    from relrank.signals import sigterm_as_keyboard_interrupt

    _quiet_libraries()
    try:
        with sigterm_as_keyboard_interrupt():
            main(argv)
    except Interrupted as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def _dataset_defaults_help() -> str:
    rows = [
        f"  {name:10s} model={d['model']} epochs={d['epochs']} batch_pairs={d['batch_pairs']} "
        f"backbone_lr={d['backbone_lr']:g} head_lr={d['head_lr']:g} weight_decay={d['weight_decay']:g}"
        for name, d in DATASET_DEFAULTS.items()
    ]
    return "defaults per dataset (a flag overrides them):\n" + "\n".join(rows)


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a relative-attribute ranker (VGG-16 + Dense(1), RankNet loss) on pairs of images.",
        epilog=_dataset_defaults_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--dataset", default="synthetic", help="dataset name (default: synthetic, the embedded demo dataset)")
    add("--attr", default=None, help="attribute to rank by (default: the dataset's first); 'all' trains one model per attribute")
    add("--workdir", default=None, help="where checkpoints, metrics.jsonl and curves.png go (default: runs/DATASET/ATTR); "
        "rerunning on a workdir with a checkpoint resumes it")
    add("--epochs", type=int, help="passes over the training pairs")
    add("--batch_pairs", type=int, help="pairs per training step (2x as many images); divisible by the device count")
    add("--backbone_lr", type=float, help="RMSProp learning rate of the VGG-16 layers (0 freezes them)")
    add("--head_lr", type=float, help="RMSProp learning rate of the Dense(1) ranking layer")
    add("--weight_decay", type=float, help="coefficient of the L2 penalty on all weights (not biases)")
    add("--seed", type=int, help="seed of initialisation, data order and dropout (default: 0)")
    add("--model", choices=sorted(MODEL_PRESETS), help="vgg16 (the paper's network) or vgg16_small (1/8 width, for CPUs)")
    add("--weights", help="pretrained ImageNet VGG-16 file (torchvision .pth/.safetensors, timm .safetensors, "
        "Lasagne vgg16.pkl); its preprocessing is used and saved with the checkpoints. Default: random init")
    add("--method", choices=["deep", "ranksvm"], help="deep: fine-tune VGG-16 end to end (default); ranksvm: "
        "the paper's baseline, a RankSVM with similarity constraints on frozen features")
    add("--ranksvm_features", choices=["dataset", "fc7"], help="ranksvm features: the dataset's own (PubFig/OSR "
        "GIST, default) or fc7 of the backbone given by --weights")
    add("--ranksvm_c", type=float, help="ranksvm cost of each violated pair (default: 0.1, Parikh & Grauman's)")
    add("--image_size", type=int, help="input side in pixels, a multiple of 32 (default: 224 for vgg16, 32 for vgg16_small)")
    add("--compute_dtype", choices=["float32", "bfloat16"], help="dtype of the forward/backward pass; parameters stay float32")
    add("--eval_batch_images", type=int, help="images per scoring batch at evaluation (default: 128)")
    add("--checkpoint_every_steps", type=int, help="save a checkpoint every N steps, besides each epoch's end (default: 500)")
    add("--keep_checkpoints", type=int, help="how many recent checkpoints to keep; the best one is kept too (default: 3)")
    add("--log_every_steps", type=int, help="steps between metrics.jsonl rows (default: 10)")
    add("--stop_after_steps", type=int, default=None, help="stop after N more steps with a checkpoint (rerun to continue)")
    add("--data_dir", default=None, help="TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    add("--manual_dir", default=None, help="folder holding the dataset's source files "
        "(default: DATA_DIR/downloads/manual/<builder>); the error for a missing file says what to download")
    add("--split", type=int, help="zappos1 only: which of the 10 train/test splits (default: 1)")
    add("--equal_pairs", action="store_const", const=True, default=None,
        help="zappos1/zappos2: also train on the release's 'equal' pairs (target 0.5)")
    add("--test_pairs_fraction", type=float, help="evaluate a seeded random fraction of the test pairs "
        "(the paper used 0.05 for OSR; default: 1, all of them)")
    return parser


def _train(argv) -> None:
    from relrank.data import load_dataset_for
    from relrank.baseline import train_ranksvm
    from relrank.trainer import train
    from relrank.workdir import check_usable

    args = train_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("attr", "workdir", "stop_after_steps")}
    base = make_config(**overrides)  # validates flags before any data work
    if args.workdir:
        check_usable(args.workdir)
    data = load_dataset_for(base)
    attrs = data.attributes if args.attr == "all" else [args.attr or data.attributes[0]]
    for attr in attrs:
        config = make_config(**overrides, attr=attr)
        workdir = args.workdir or os.path.join("runs", config.dataset, attr)
        if len(attrs) > 1 and args.workdir:
            workdir = os.path.join(args.workdir, attr)
        if config.method == "ranksvm":
            summary = train_ranksvm(config, workdir)
        else:
            summary = train(config, workdir, stop_after_steps=args.stop_after_steps)
        accuracy = summary["test_accuracy"]
        shown = f"{accuracy:.2f}%" if accuracy is not None else "not evaluated yet"
        print(
            f"{config.dataset}/{attr}: test accuracy {shown} at step {summary['final_step']} "
            f"({summary['wall_seconds']:.0f} s; compile {summary['compile_seconds']:.1f} s) -> {workdir}"
        )


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Evaluate trained rankers: percentage of correctly ordered test pairs "
        "(ground-truth ties skipped, predicted ties counted wrong), one row per attribute.",
    )
    add = parser.add_argument
    add("--workdir", required=True, help="a run's workdir, or a folder of runs (one per attribute)")
    add("--checkpoint", default="latest", help="latest (default), best (highest test accuracy seen) or a step number")
    add("--split", default="test", help="pair set to evaluate (default: test)")
    add("--data_dir", default="", help="TFDS data directory, if not the one the run was trained with")
    add("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def _evaluate(argv) -> None:
    from relrank.evaluator import evaluate_run, find_runs

    args = evaluate_parser().parse_args(argv)
    results = [evaluate_run(run, args.checkpoint, args.split, args.data_dir) for run in find_runs(args.workdir)]
    if args.json:
        print(json.dumps(dict(results=results), indent=2))
        return
    print(f"{'dataset':10s} {'attribute':20s} {'step':>7s} {'pairs':>9s} {'accuracy':>9s}")
    for r in results:
        print(f"{r['dataset']:10s} {r['attr']:20s} {r['step']:7d} {r['num_pairs']:9d} {r['accuracy']:8.2f}%")
    if len(results) > 1:
        accuracies = [r["accuracy"] for r in results]
        mean = sum(accuracies) / len(accuracies)
        std = (sum((a - mean) ** 2 for a in accuracies) / len(accuracies)) ** 0.5
        print(f"{'mean':10s} {'':20s} {'':7s} {'':9s} {mean:8.2f}%  (std {std:.2f} over {len(results)} runs)")


def train_main(argv=None) -> int:
    return _run(_train, argv)


def evaluate_main(argv=None) -> int:
    return _run(_evaluate, argv)
