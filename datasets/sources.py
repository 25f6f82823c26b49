"""Reading the source files users bring: clear errors for missing or unreadable files."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image


class SourceFilesError(Exception):
    """A source file of a dataset is missing or unreadable (the message says which, and how to get it)."""


def require(path: str, instructions: str) -> str:
    """`path` if it exists, else a SourceFilesError naming it and repeating the instructions."""
    if not os.path.exists(path):
        raise SourceFilesError(f"missing {path}\n{instructions.strip()}")
    return path


def image_bytes(path: str) -> bytes:
    """The file's bytes, after checking that it decodes as an image."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB").load()
    except (OSError, SyntaxError, ValueError) as error:
        raise SourceFilesError(f"cannot read image {path}: {error}") from error
    return data


def loadmat(path: str, instructions: str) -> dict:
    import scipy.io

    require(path, instructions)
    try:
        return scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError) as error:
        raise SourceFilesError(f"cannot read MATLAB file {path}: {error}") from error


def strings(cell) -> list[str]:
    """A MATLAB cell array of strings (any shape) as a flat list of str."""
    return [str(np.asarray(x).ravel()[0]) if np.asarray(x).size else "" for x in np.asarray(cell, dtype=object).ravel()]
