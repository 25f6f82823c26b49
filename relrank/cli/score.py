"""`relrank score`: score images (files or folders) with a trained run and write image, score and rank to a CSV."""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

from relrank.cli.files import add_run_arguments, check_output_file, image_paths, sheet_formats
from relrank.errors import UserError

DESCRIPTION = "Score images (files or folders) and write image, score and rank to a CSV."


def parser(prog: str = "relrank score") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_run_arguments(parser, "which attribute of a run trained on several (default: all of them, one row per image "
                              "and attribute)")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--out", default="ranking.csv", help="the CSV to write (default: ranking.csv)")
    parser.add_argument("--sheet", default="", help="also draw the images from weakest to strongest into this PNG")
    return parser


def main(argv: list[str], prog: str = "relrank score") -> None:
    args = parser(prog).parse_args(argv)  # before the imports, which load JAX: --help stays quick
    from relrank.use.figures import ranking_sheet
    from relrank.use.ranker import load

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
