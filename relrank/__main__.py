"""Use a trained ranker from the command line: `python -m relrank {score,saliency,embed} --help`."""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np
from tqdm.auto import tqdm

from relrank.cli import _run
from relrank.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
CHUNK = 256


def image_paths(inputs: list[str]) -> list[str]:
    """Files given, plus the image files inside folders given (recursively, sorted)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for folder, _, files in sorted(os.walk(item)):
                paths += [os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise UserError(f"no such file or folder: {item}")
    if not paths:
        raise UserError("no images found in " + ", ".join(inputs))
    return paths


def check_output_file(path: str, flag: str, example: str) -> None:
    """A one-line error before any work if `path` cannot be written as a file."""
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a folder; give a file name, e.g. {os.path.join(path, example)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{flag} {path}: folder {folder} is not writable")


def read_images(paths: list[str], size: int) -> tuple[list[str], list[np.ndarray], list[tuple[str, str]]]:
    """(readable paths, their images at `size`, (unreadable path, why)); decoded as in training."""
    from relrank.images import ImageDecodeError, to_uint8_rgb

    good, images, bad = [], [], []
    for path in paths:
        try:
            images.append(to_uint8_rgb(path, size))
            good.append(path)
        except ImageDecodeError as error:
            bad.append((path, str(error)))
    return good, images, bad


def score(args) -> None:
    from relrank.figures import ranking_sheet
    from relrank.ranker import load

    check_output_file(args.out, "--out", "ranking.csv")
    if args.sheet:
        check_output_file(args.sheet, "--sheet", "ranking.png")
    ranker = load(args.workdir, args.checkpoint)
    paths = image_paths(args.inputs)
    kept, scores, thumbs, skipped = [], [], [], []
    for start in tqdm(range(0, len(paths), CHUNK), desc="scoring", unit="chunk", disable=len(paths) <= CHUNK):
        good, images, bad = read_images(paths[start : start + CHUNK], ranker.config.image_size)
        skipped += bad
        if good:
            kept += good
            scores.append(ranker.score(np.stack(images)))
            if args.sheet:
                thumbs += images
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for _, why in skipped[:10]:
            print(f"  {why}", file=sys.stderr)
        if len(skipped) > 10:
            print(f"  ... and {len(skipped) - 10} more", file=sys.stderr)
    if not kept:
        raise UserError("none of the images could be read")
    values = np.concatenate(scores)
    order = np.argsort(-values)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "score", "rank"])
        for rank, i in enumerate(order, start=1):
            writer.writerow([kept[i], f"{values[i]:.6g}", rank])
    print(f"scored {len(kept)} images by {ranker.config.attr!r} -> {args.out} (rank 1 = most)")
    if args.sheet:
        ranking_sheet(thumbs, values, args.sheet)
        print(f"sheet, weakest to strongest -> {args.sheet}")


def saliency(args) -> None:
    from relrank.figures import saliency_figure
    from relrank.ranker import load
    from relrank.saliency import pair_saliency

    check_output_file(args.out, "--out", "saliency.png")
    ranker = load(args.workdir, args.checkpoint)
    for path in (args.image_a, args.image_b):
        if not os.path.isfile(path):
            raise UserError(f"no such image file: {path}")
    _, images, bad = read_images([args.image_a, args.image_b], ranker.config.image_size)
    if bad:
        raise UserError(bad[0][1])
    p, map_a, map_b = pair_saliency(ranker, images[0], images[1], sigma=args.sigma)
    saliency_figure(images[0], images[1], map_a, map_b, p, args.out, ranker.config.attr)
    a, b = os.path.basename(args.image_a), os.path.basename(args.image_b)
    print(f"P({a} shows more {ranker.config.attr} than {b}) = {p:.3f} -> {args.out}")


def embed(args) -> None:
    from relrank.data import load_dataset_for
    from relrank.embedding import before_and_after, tsne
    from relrank.figures import embedding_figure
    from relrank.ranker import load

    check_output_file(args.out, "--out", "embedding.png")
    ranker = load(args.workdir, args.checkpoint)
    data = load_dataset_for(ranker.config)
    ids = data.pairs("test", ranker.config.attr).images()[: args.max_images]
    images = data.load_images(ids, ranker.config.image_size)
    before, after = before_and_after(ranker, images)
    rank = np.argsort(np.argsort(ranker.score(images)))
    embedding_figure(tsne(before), tsne(after), rank, args.out, f"{ranker.config.dataset} / {ranker.config.attr}")
    print(f"t-SNE of {len(ids)} test images before and after fine-tuning -> {args.out}")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m relrank", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True)

    def command(name, function, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--workdir", required=True, help="a trained run's workdir")
        sub.add_argument("--checkpoint", default="latest", help="latest (default), best or a step number")
        sub.set_defaults(function=function)
        return sub

    s = command("score", score, "Score images (files or folders) and write image, score and rank to a CSV.")
    s.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    s.add_argument("--out", default="ranking.csv", help="the CSV to write (default: ranking.csv)")
    s.add_argument("--sheet", default="", help="also draw the images from weakest to strongest into this PNG")
    s = command("saliency", saliency, "Saliency maps of P(a shows more than b) for two images (paper fig. 7).")
    s.add_argument("image_a")
    s.add_argument("image_b")
    s.add_argument("--out", default="saliency.png", help="the PNG to write (default: saliency.png)")
    s.add_argument("--sigma", type=float, default=3.0, help="Gaussian smoothing in pixels (default: 3)")
    s = command("embed", embed, "t-SNE of fc7 features of test images before/after fine-tuning (paper fig. 5).")
    s.add_argument("--out", default="embedding.png", help="the PNG to write (default: embedding.png)")
    s.add_argument("--max_images", type=int, default=500, help="at most this many test images (default: 500)")
    return main


def _dispatch(argv) -> None:
    args = parser().parse_args(argv)
    args.function(args)


def main(argv=None) -> int:
    return _run(_dispatch, argv)


if __name__ == "__main__":
    sys.exit(main())
