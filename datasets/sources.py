"""Reading the source files users bring: clear errors for missing or unreadable files."""

from __future__ import annotations

import os
import textwrap

import numpy as np


class SourceFilesError(Exception):
    """A source file of a dataset is missing or unreadable (the message says which, and how to get it)."""


def with_instructions(first_line: str, instructions: str) -> str:
    """A self-contained first line, then the download instructions evenly indented below it."""
    return f"{first_line}\n{textwrap.indent(textwrap.dedent(instructions).strip(), '  ')}"


def require(path: str, instructions: str) -> str:
    """`path` if it exists, else a SourceFilesError naming it and repeating the instructions."""
    if not os.path.exists(path):
        raise SourceFilesError(with_instructions(f"missing {path}", instructions))
    return path


def image_bytes(path: str) -> bytes:
    """The file's bytes, after checking that relrank's decoder turns them into RGB pixels."""
    from relrank.data.images import ImageDecodeError, decode

    try:
        with open(path, "rb") as f:
            data = f.read()
        decode(data, name=path)
    except OSError as error:
        raise SourceFilesError(f"cannot read image {path}: {error.strerror or error}") from None
    except ImageDecodeError as error:
        raise SourceFilesError(str(error)) from None
    return data


def loadmat(path: str, instructions: str, variables: tuple[str, ...] = ()) -> dict:
    """The MATLAB file at `path`, which must hold `variables`; errors name the file and what is wrong."""
    import scipy.io

    require(path, instructions)
    try:
        data = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises many kinds (MatReadError, ValueError, ...) for a broken file
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SourceFilesError(with_instructions(f"cannot read MATLAB file {path}: {why}", instructions)) from None
    missing = [name for name in variables if name not in data]
    if missing:
        held = sorted(k for k in data if not k.startswith("__"))
        raise SourceFilesError(f"{path} lacks the variable(s) {', '.join(missing)} "
                               f"(it holds: {', '.join(held) or 'nothing'}); is it the right file?")
    return data


def strings(cell) -> list[str]:
    """A MATLAB cell array of strings (any shape) as a flat list of str."""
    return [str(np.asarray(x).ravel()[0]) if np.asarray(x).size else "" for x in np.asarray(cell, dtype=object).ravel()]
