"""The annotation folder: its readable images, the lock that lets one server write to it, and nothing else.

`--images=DIR`: the images are DIR's own files (in any sub-folders), or DIR/images/ when it exists (the
layout `--dataset=pairs_csv` reads); the answers go to DIR/pairs.csv either way. Only the images found here
are ever served: a name is looked up, never joined to a path, so `..` and links out of the folder cannot
reach other files.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import os
import sys
import tempfile

from PIL import Image

from relrank.data.images import IMAGE_EXTENSIONS
from relrank.errors import UserError
from relrank_datasets.pairs_csv.pairs_csv_dataset_builder import image_names, images_folder

LOCK_FILE = ".relrank-annotate.lock"


@dataclasses.dataclass(frozen=True)
class Folder:
    root: str  # DIR, where pairs.csv is
    images_root: str  # where the images are
    names: tuple[str, ...]  # readable images, paths relative to images_root with '/', sorted
    unreadable: tuple[str, ...]

    @property
    def pairs_csv(self) -> str:
        return os.path.join(self.root, "pairs.csv")

    def path(self, name: str) -> str:
        """The file of an image name this folder holds (a name it does not hold is a KeyError)."""
        if name not in self.index:
            raise KeyError(name)
        return os.path.join(self.images_root, *name.split("/"))

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Image name -> its position in `names`."""
        return {n: i for i, n in enumerate(self.names)}


def header_problem(path: str) -> str:
    """'' when PIL recognises the file as an image (its header; decoding errors show when it is shown), else
    'bomb' (more pixels than PIL will decode) or 'unreadable'."""
    try:
        with Image.open(path) as image:
            image.size
        return ""
    except Image.DecompressionBombError:
        return "bomb"
    except Exception:  # noqa: BLE001 - any other failure means: not an image we can show
        return "unreadable"


def decodes(path: str) -> bool:
    """Whether the whole image decodes (a truncated file with a good header does not; JPEGs are decoded at a
    reduced scale, which reads all their data): checked before an image is first served."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
        return True
    except Exception:  # noqa: BLE001 - deleted, truncated, damaged: any failure means it cannot be shown
        return False


def open_folder(root: str) -> Folder:
    """The folder's images; fewer than two readable ones is a one-line error, unreadable ones are listed once."""
    if not os.path.isdir(root):
        raise UserError(f"--images={root} is not a folder")
    images_root = images_folder(root)
    known, refused = image_names(images_root)
    candidates = sorted(n for n in known if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))
    problems = {n: header_problem(os.path.join(images_root, n)) for n in candidates}
    good = [n for n in candidates if not problems[n]]
    bombs = [n for n in candidates if problems[n] == "bomb"]
    if bombs:
        print(f"skipping {len(bombs)} image(s) too large to decode safely (over {Image.MAX_IMAGE_PIXELS * 2:,} pixels: "
              f"decompression bombs?): {', '.join(bombs[:10])}", file=sys.stderr)
    bad = [n for n in candidates if problems[n] == "unreadable"] + sorted(refused)
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        print(f"skipping {len(bad)} unreadable image file(s) or links out of the folder in {images_root}: {shown}",
              file=sys.stderr)
    if len(good) < 2:
        raise UserError(f"{images_root} holds {len(good)} readable image(s) ({', '.join(IMAGE_EXTENSIONS)}); "
                        f"annotating needs at least two")
    return Folder(os.path.abspath(root), os.path.abspath(images_root), tuple(good), tuple(bad))


def check_writable(folder: Folder) -> None:
    """A one-line error before serving when the answers could not be saved."""
    target = folder.root  # the lock file goes there, and pairs.csv when it is new
    try:
        tempfile.TemporaryFile(dir=folder.root).close()  # a read-only mount refuses even root
        if os.path.exists(folder.pairs_csv) and not os.access(folder.pairs_csv, os.W_OK):
            target = folder.pairs_csv
            raise PermissionError(target)
    except OSError:
        raise UserError(f"{target} is read-only: answers could not be saved; make it writable or copy the images "
                        f"to a folder you can write to") from None


def lock(folder: Folder):
    """Hold the folder's lock for this process's life: a second `relrank annotate` on it is refused.

    Returns the open lock file (keep it open). The lock is the kernel's (flock): it is released when the
    process ends, even by kill -9, so a crashed server never leaves the folder locked."""
    path = os.path.join(folder.root, LOCK_FILE)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"{folder.root} is being annotated by another relrank annotate ({holder}); stop it, or use "
                        f"its page (several tabs and annotators can share one server)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle
