"""`relrank train` (and `train.py`): train rankers, one run per seed, deep or RankSVM."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

from relrank.cli import flags
from relrank.cli.runner import EXIT_DID_NOT_LEARN
from relrank.config import Config, ModelSpec, setting
from relrank.configs import recipes, resolve
from relrank.configs.resolve import default_recipe
from relrank.configs.presets import MEANT_FOR_WEIGHTS
from relrank.data.registry import DATASETS
from relrank.errors import UserError

RANDOM_WEIGHTS = "random"  # --weights=random: the paper's VGG-16 from random init, on purpose


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The train command's flags that are not Config fields."""

    attr: str | None = setting(None, "run", "attribute to rank by; 'all' or a comma-separated list trains one "
                               "network with one ranking output per attribute", unset="the dataset's first")
    workdir: str | None = setting(None, "run", "where checkpoints, metrics.jsonl, TensorBoard events and curves.png "
                                  "go; rerunning on a workdir with a checkpoint resumes it", unset="runs/DATASET/ATTR")
    seeds: int = setting(1, "run", "train this many runs, seeds --seed, --seed+1, ..., in WORKDIR/seed_N "
                         "(evaluate then reports mean +- std)")
    stop_after_steps: int | None = setting(None, "run", "stop after N more steps with a checkpoint (rerun to continue)",
                                            unset="none: train to the end")
    extend: bool = setting(False, "run", "resume a run with a larger --epochs on purpose (its learning-rate schedule "
                           "stretches to the new length); any other change of settings on resume is refused")
    print_config: bool = setting(False, "run", "print the resolved configuration (every field, its value and where "
                                 "it came from: default, dataset, preset, recipe, flag) and exit without touching data")
    coordinator_address: str | None = setting(None, "hosts", "HOST:PORT of process 0, which serves as coordinator",
                                              unset="detected, else one process")
    num_processes: int | None = setting(None, "hosts", "how many processes train together")
    process_id: int | None = setting(None, "hosts", "this process's index, 0 .. num_processes-1")
    coordinator_timeout: float = setting(300.0, "hosts", "seconds to wait for the coordinator and the other processes")


def parser(prog: str = "relrank train", argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The train command's flags, generated from the Config's fields and TrainOptions. The help shows each field's
    value as resolved for the --dataset and --recipe in `argv` (default: the demo dataset's)."""
    shown, resolved_for = _resolved_defaults(argv or [])
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_epilog(resolved_for),
        description="Train a relative-attribute ranker (a backbone + a linear ranking layer, RankNet loss) on pairs of images.")
    flags.add_fields(parser, [TrainOptions, Config, ModelSpec], shown)
    return parser


def _resolved_defaults(argv: list[str]) -> tuple[dict[str, str], str]:
    """('(default: ...)' texts resolved for the --dataset and --recipe/--config in argv, 'dataset X, recipe Y')."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--dataset")
    early.add_argument("--recipe", "--config", dest="recipe")
    known, _ = early.parse_known_args(argv)
    try:
        resolved = resolve(dict(dataset=known.dataset, recipe=known.recipe))
    except UserError:  # an unknown dataset or recipe: the parser itself will say so
        resolved = resolve({})
    return flags.resolved_defaults(resolved), f"--dataset={resolved.config.dataset} --recipe={resolved.config.recipe}"


def _epilog(resolved_for: str) -> str:
    names = "\n".join(f"  {name:8s} {about}" for name, about in recipes.RECIPES.items())
    datasets = "\n".join(f"  {name:16s} recipe={default_recipe(name, {})} epochs={spec.epochs}"
                         for name, spec in DATASETS.items())
    return (f"defaults shown are those of {resolved_for} (give --dataset and --recipe before --help to see theirs; "
            f"--print_config shows every field)\n\n"
            f"recipes (--recipe=NAME; files in relrank/configs/; a flag overrides any field they set):\n{names}\n\n"
            f"datasets, with the recipe used without --recipe (finetune where the paper's needs VGG-16 weights that "
            f"are not given) and the paper's epochs:\n{datasets}")


def main(argv: list[str], prog: str = "relrank train") -> int:
    args = vars(parser(prog, argv).parse_args(argv))
    given = {f.name: args.pop(f.name) for f in dataclasses.fields(TrainOptions)}  # the rest are Config fields
    options = TrainOptions(**{name: value for name, value in given.items() if value is not None})
    random_on_purpose = args["weights"] == RANDOM_WEIGHTS
    if random_on_purpose:
        args["weights"] = ""  # given, and empty: random init (no recipe's weights either)
    resolved = resolve(args)  # validates the flags before any data work
    if options.print_config:  # --attr as given ('all', say): the dataset resolves it when it is opened
        shown = resolve(dict(args, attr=options.attr)) if options.attr else resolved
        print(flags.describe(shown, adapts=recipes.adapts(resolved.config.recipe)))
        return 0
    _check_options(resolved.config, options, random_on_purpose)
    return _train_seeds(args, resolved.config, options)


def _check_options(base: Config, options: TrainOptions, random_on_purpose: bool) -> None:
    """One-line errors before any data work: VGG-16 without weights, bad option values, a bad weights file or workdir."""
    from relrank.model.weights import check_weights
    from relrank.run.workdir import check_usable

    if base.method == "deep" and base.model in MEANT_FOR_WEIGHTS and not base.weights and not random_on_purpose:
        network = "the paper's VGG-16" if base.model == "vgg16" else base.model
        raise UserError(f"--dataset={base.dataset} trains {network} at {base.image_size} px, which is meant to "
                        f"start from pretrained weights (from random init on a CPU it runs for days): give "
                        f"--weights=FILE (see the README), or --recipe=finetune to fine-tune the packaged "
                        f"EfficientNet-Lite0, or --recipe=scratch to learn from scratch on a CPU, or "
                        f"--weights={RANDOM_WEIGHTS} to train {base.model} from random init anyway")
    if options.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {options.seeds}")
    if options.stop_after_steps is not None and options.stop_after_steps < 1:
        raise UserError(f"--stop_after_steps must be at least 1, got {options.stop_after_steps}")
    if base.weights:
        check_weights(base)  # a bad file is one line before any data work
    if options.workdir:
        check_usable(options.workdir)
        check_seed_layout(options.workdir, options.seeds)


def _train_seeds(args: dict, base: Config, options: TrainOptions) -> int:
    """Open the data (once, on process 0 first), let the recipe adapt to its pairs, and train each seed."""
    from relrank.data.datasets import load_dataset_for
    from relrank.data.pairs import PairStructure
    from relrank.parallel import distributed
    from relrank.train.loop import train
    from relrank.use.ranksvm import train_ranksvm

    distributed.initialize(options.coordinator_address, options.num_processes, options.process_id,
                           options.coordinator_timeout)
    data = distributed.first_on_main(lambda: load_dataset_for(base), "prepare the dataset")
    attrs = _attrs(options.attr, data)
    if base.method == "deep":
        structure = PairStructure.of(data.pairs_of("train", attrs))
        base = resolve(args, pairs=structure).config  # recipes adapt to how densely the pairs cover the images
        if distributed.is_main():
            chosen = recipes.recipe_regime(base.recipe, base.dataset, structure)
            print(f"{base.dataset}: {structure.describe()}" + (f"; recipe {base.recipe}: {chosen} settings" if chosen
                                                                 else ""), file=sys.stderr)
    root = options.workdir or os.path.join("runs", base.dataset, "all" if options.attr == "all" else "+".join(attrs))
    if not options.workdir:  # a --workdir was checked before the data work
        check_seed_layout(root, options.seeds)
    status = 0
    for seed in range(base.seed, base.seed + options.seeds):
        config = dataclasses.replace(base, attr=",".join(attrs), seed=seed)
        workdir = os.path.join(root, f"seed_{seed}") if options.seeds > 1 else root
        if config.method == "ranksvm":
            print_result(config, train_ranksvm(config, workdir, data=data), "RankSVM test accuracy", workdir)
            continue
        summary = train(config, workdir, stop_after_steps=options.stop_after_steps, data=data, extend=options.extend)
        if distributed.is_main():
            print_result(config, summary, "test accuracy", workdir,
                         f" at step {summary['final_step']} ({summary['wall_seconds']:.0f} s; compile "
                         f"{summary['compile_seconds']:.1f} s)")
        if summary.get("did_not_learn"):
            status = EXIT_DID_NOT_LEARN
    return status


def _attrs(argument: str | None, data) -> tuple[str, ...]:
    """--attr resolved against the dataset: one name, a comma-separated list, or 'all'."""
    from relrank.data.datasets import check_attribute

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


def check_seed_layout(root: str, seeds: int) -> None:
    """A run and seed_N/ runs never share a folder: --seeds>1 into a run's workdir, or one seed into a folder of
    seeds, is a one-line error."""
    from relrank.run.finished import is_run

    if seeds > 1 and is_run(root):
        raise UserError(f"{root} holds a single run; --seeds={seeds} would put seed_N/ runs beside it: "
                        f"give another --workdir")
    if seeds == 1 and os.path.isdir(root) and not is_run(root) and any(
            is_run(os.path.join(root, d)) for d in os.listdir(root) if d.startswith("seed_")):
        raise UserError(f"{root} holds seed_N/ runs of --seeds; resume them with the same --seeds, or give another "
                        f"--workdir for a single run")


def print_result(config: Config, summary: dict, what: str, workdir: str, details: str = "") -> None:
    accuracy = summary["test_accuracy"]
    failure = summary.get("did_not_learn")
    if failure:
        from relrank.train.monitor import described

        details += f"; did not learn: {described(failure)} (see above)"
    if accuracy is None:
        print(f"{config.dataset}/{config.attr}: {what} not evaluated yet{details} -> {workdir}")
        return
    if not math.isfinite(accuracy):
        print(f"{config.dataset}/{config.attr}: nothing to evaluate, every test pair is a tie{details} -> {workdir}")
        return
    from relrank.evaluation.evaluator import few_pairs_warning

    per_attr = summary.get("test_accuracy_per_attr")
    counted = summary.get("test_pairs") or {}
    on = lambda attr: f" on {counted[attr]:,} test pairs" if attr in counted else ""  # noqa: E731
    if per_attr:
        for attr, value in per_attr.items():
            print(f"  {attr:24s} {value:6.2f}%{on(attr)}" if math.isfinite(value) else
                  f"  {attr:24s} no pairs to evaluate (all ties)")
        print(f"{config.dataset}/{len(per_attr)} attributes: mean {what} {accuracy:.2f}%{details} -> {workdir}")
    else:
        print(f"{config.dataset}/{config.attr}: {what} {accuracy:.2f}%{on(config.attr)}{details} -> {workdir}")
    warning = few_pairs_warning(counted)
    if warning:
        print(f"{warning}; annotate more, or hold out more images (the split column, --val_fraction)", file=sys.stderr)
