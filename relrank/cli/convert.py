"""`relrank convert`: pretrained VGG-16 weights (any supported kind) to relrank's .safetensors layout."""

from __future__ import annotations

import argparse
import time

from relrank.cli.files import check_output_file
from relrank.errors import UserError


DESCRIPTION = "Convert pretrained VGG-16 weights (any supported kind) to relrank's .safetensors layout."


def parser(prog: str = "relrank convert") -> argparse.ArgumentParser:
    from relrank.model.weights import SUPPORTED

    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("source", help=f"the weights file: {SUPPORTED}")
    parser.add_argument("target", help="where to write the .safetensors file")
    return parser


def main(argv: list[str], prog: str = "relrank convert") -> None:
    from relrank.model.weights import convert

    args = parser(prog).parse_args(argv)
    check_output_file(args.target, "target", "vgg16.safetensors")
    start = time.perf_counter()
    try:
        convert(args.source, args.target)
    except Exception as error:  # OSError, SafetensorError: a read-only place, a full disk
        if isinstance(error, UserError):
            raise
        raise UserError(f"cannot write {args.target}: {getattr(error, 'strerror', None) or error}") from None
    print(f"wrote {args.target} ({time.perf_counter() - start:.1f} s)")
