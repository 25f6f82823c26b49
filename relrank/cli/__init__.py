"""The `relrank` command: `relrank train|evaluate|score|saliency|embed|convert|export|annotate`, one module per command.

Each command module has `DESCRIPTION`, `parser(prog)` and `main(argv, prog)`; `train.py`, `evaluate.py` and
`python -m relrank` are aliases that pass their own name as `prog`, so every --help names the command typed.
"""

from __future__ import annotations

import importlib
import sys

from relrank.cli.runner import EXIT_USER_ERROR, run

COMMANDS = {  # name -> what it does (its module's DESCRIPTION says more)
    "train": "train rankers on a dataset's pairs (train.py)",
    "evaluate": "the paper's metric for finished runs, seeds pooled (evaluate.py)",
    "score": "score images with a trained run and write a CSV (and a ranked sheet)",
    "saliency": "saliency maps of P(a shows more than b) for two images",
    "embed": "t-SNE of the backbone's features before and after fine-tuning",
    "convert": "convert pretrained VGG-16 weights to relrank's .safetensors layout",
    "export": "a trained ranker as a jax.export artifact that scores images without relrank",
    "annotate": "collect pairs for your own attribute in the browser, the next pair chosen by the model",
}


def command(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run command `name` with `argv` (default: sys.argv[1:]); its --help names it `prog` (default: 'relrank NAME')."""
    module = importlib.import_module(f"relrank.cli.{name}")
    argv = sys.argv[1:] if argv is None else argv
    return run(lambda args: module.main(args, prog or f"relrank {name}"), argv)


def main(argv: list[str] | None = None, prog: str = "relrank") -> int:
    """The `relrank` command (`python -m relrank` too): the first argument names the command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        listed = "\n".join(f"  {name:9s} {about}" for name, about in COMMANDS.items())
        print(f"usage: {prog} COMMAND [flags]   ({prog} COMMAND --help for its flags)\n\n"
              f"Deep relative attributes: learn to rank images by a visual attribute from pairwise comparisons.\n\n"
              f"commands:\n{listed}")
        return 0 if argv else EXIT_USER_ERROR
    if argv[0] not in COMMANDS:
        print(f"error: {prog}: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return command(argv[0], argv[1:], f"{prog} {argv[0]}")


def train_main(argv: list[str] | None = None) -> int:
    """`train.py`."""
    return command("train", argv, "train.py")


def evaluate_main(argv: list[str] | None = None) -> int:
    """`evaluate.py`."""
    return command("evaluate", argv, "evaluate.py")
