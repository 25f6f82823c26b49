"""`relrank saliency`: where two images differ in the attribute, as the ranker sees it (paper fig. 7)."""

from __future__ import annotations

import argparse
import math
import os

from relrank.cli.files import add_run_arguments, check_output_file, figure_formats
from relrank.errors import UserError

DESCRIPTION = "Saliency maps of P(a shows more than b) for two images (paper fig. 7)."


def parser(prog: str = "relrank saliency") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_run_arguments(parser, "which attribute of a run trained on several (default: its only one)")
    parser.add_argument("image_a")
    parser.add_argument("image_b")
    parser.add_argument("--out", default="saliency.png", help="the PNG to write (default: saliency.png)")
    parser.add_argument("--sigma", type=float, default=3.0, help="Gaussian smoothing in pixels (default: 3)")
    return parser


def main(argv: list[str], prog: str = "relrank saliency") -> None:
    args = parser(prog).parse_args(argv)  # before the imports, which load JAX: --help stays quick
    from relrank.data.images import to_uint8_rgb
    from relrank.use.figures import saliency_figure
    from relrank.use.ranker import load
    from relrank.use.saliency import pair_saliency

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
