"""`relrank embed`: t-SNE of fc7 features of test images before and after fine-tuning (paper fig. 5)."""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np

from relrank.cli.files import add_run_arguments, check_output_file, figure_formats
from relrank.errors import UserError

DESCRIPTION = "t-SNE of the backbone's features (fc7 for VGG-16) of test images before/after fine-tuning (paper fig. 5)."
MIN_EMBEDDED = 5  # images t-SNE is drawn for, at least


def parser(prog: str = "relrank embed") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_run_arguments(parser, "which attribute of a run trained on several (default: its only one)")
    parser.add_argument("--out", default="embedding.png", help="the PNG to write (default: embedding.png)")
    parser.add_argument("--max_images", type=int, default=500, help="at most this many test images (default: 500)")
    return parser


def main(argv: list[str], prog: str = "relrank embed") -> None:
    args = parser(prog).parse_args(argv)  # before the imports, which load JAX: --help stays quick
    from relrank.data.datasets import load_dataset_for
    from relrank.use.embedding import before_and_after, tsne
    from relrank.use.figures import embedding_figure
    from relrank.use.ranker import load

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

