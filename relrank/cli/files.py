"""Files the commands read and write: image paths from files and folders, output files checked before any work."""

from __future__ import annotations

import os

from relrank.data.images import IMAGE_EXTENSIONS
from relrank.errors import UserError


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



def add_run_arguments(parser, attr_help: str) -> None:
    """--workdir, --checkpoint and --attr: which trained run, which of its checkpoints, which of its attributes."""
    parser.add_argument("--workdir", required=True, help="a trained run's workdir")
    parser.add_argument("--checkpoint", default="latest", help="latest (default), best or a step number")
    parser.add_argument("--attr", default=None, help=attr_help)
