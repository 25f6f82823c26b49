"""`relrank export`: a trained run as a `jax.export` artifact that scores images without relrank."""

from __future__ import annotations

import argparse
import os

from relrank.cli.files import add_run_arguments, check_output_file
from relrank.errors import UserError

DESCRIPTION = ("Export a trained ranker as a jax.export artifact (uint8 images [N, S, S, 3] -> scores [N, "
               "attributes]; CPU and CUDA; any N) with a JSON beside it; it loads with jax and numpy alone.")


def parser(prog: str = "relrank export") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_run_arguments(parser, "unused: the artifact scores every attribute of the run")
    parser.add_argument("--out", default="ranker.jaxexport", help="the artifact to write; OUT.json beside it "
                        "(default: ranker.jaxexport)")
    return parser


def main(argv: list[str], prog: str = "relrank export") -> None:
    args = parser(prog).parse_args(argv)  # before the imports, which load JAX: --help stays quick
    from relrank.run.finished import read_config
    from relrank.use.export import export_ranker
    from relrank.use.ranker import load

    check_output_file(args.out, "--out", "ranker.jaxexport")
    if os.path.isdir(args.workdir) and read_config(args.workdir).method == "ranksvm":
        raise UserError(f"{args.workdir} is a RankSVM run, which scores the dataset's stored features, not images: "
                        f"there is no image scorer to export")
    ranker = load(args.workdir, args.checkpoint)
    about = export_ranker(ranker, args.out, source=f"{os.path.abspath(args.workdir)} step {ranker.step}")
    print(f"exported {', '.join(about['attributes'])} at {about['image_size']} px (step {ranker.step}) -> {args.out} "
          f"and {args.out}.json")
