"""The prepared copy of a dataset: one preparation at a time, checked against its sources at every load.

A dataset is prepared once (TFDS array_record files) into <data_dir>/<builder>[/<config>]/<version>/.
Beside TFDS's own files relrank records two fingerprints there, `FINGERPRINTS_FILE`:
of the source files it was prepared from (the manual folder) and of the prepared
files themselves. Each fingerprint covers every file's path, size, modification
time, inode change time and inode number, so an edited source file (even one
rewritten by `cp -p` or `rsync -a`, which keep size and mtime, but not ctime),
another folder given as the source, or a damaged or truncated prepared file is
noticed at the next load: relrank says which and prepares the dataset again.
Preparations of one dataset in one data directory take turns (a lock file),
and folders that an interrupted preparation left behind are removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys

from relrank.errors import UserError

FINGERPRINTS_FILE = "relrank_fingerprints.json"


def fingerprint(folder: str, skip: tuple[str, ...] = ()) -> str:
    """A hash of every file under `folder` (paths, sizes, mtimes, ctimes, inodes); '' when it does not exist."""
    if not os.path.isdir(folder):
        return ""
    digest = hashlib.sha1()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name in skip:
                continue
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:  # a dangling link: the builder reports it
                continue
            digest.update(f"{os.path.relpath(path, folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\0"
                          f"{stat.st_ctime_ns}\0{stat.st_ino}\n".encode())
    return digest.hexdigest()[:16]


def check_data_dir(data_dir: str) -> None:
    """A one-line error if `data_dir` cannot hold prepared datasets."""
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise UserError(f"data directory {data_dir} is a file, not a folder; give --data_dir=FOLDER "
                        f"(or set TFDS_DATA_DIR to a folder)")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the data directory {data_dir} ({error.strerror}); give --data_dir=FOLDER "
                        f"(or set TFDS_DATA_DIR) where you may write") from None


@contextlib.contextmanager
def one_at_a_time(data_dir: str, key: str):
    """Hold <data_dir>/.prepare-<key>.lock: a second process preparing the same dataset waits for the first,
    then finds it prepared. A read-only data directory (already prepared, shared) is used without the lock."""
    try:
        fd = os.open(os.path.join(data_dir, f".prepare-{key}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            print(f"waiting for another process that prepares {key} in {data_dir} ...", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_incomplete(dataset_dir: str) -> None:
    """Folders a killed preparation left in `dataset_dir` (TFDS's incomplete.*; call while holding the lock)."""
    if not os.path.isdir(dataset_dir):
        return
    for name in os.listdir(dataset_dir):
        if name.startswith("incomplete.") or ".incomplete" in name:
            print(f"removing {os.path.join(dataset_dir, name)}, left by a preparation that did not finish",
                  file=sys.stderr)
            shutil.rmtree(os.path.join(dataset_dir, name), ignore_errors=True)


def stale_reason(prepared_dir: str, source_dir: str, sources: str) -> str:
    """Why the prepared copy in `prepared_dir` may not be used ('' if it may, or if there is none), given the
    `fingerprint` of `source_dir` now."""
    record_path = os.path.join(prepared_dir, FINGERPRINTS_FILE)
    if not os.path.isdir(prepared_dir):
        return ""
    try:
        with open(record_path) as f:
            saved = json.load(f)
        saved_sources, prepared = saved["sources"], saved["prepared"]
    except (OSError, ValueError, KeyError, TypeError):
        return "it has no readable record of what it was prepared from"
    if prepared != fingerprint(prepared_dir, skip=(FINGERPRINTS_FILE,)):
        return "its files changed since they were written (damaged, truncated or edited)"
    if saved_sources != sources:
        return f"its source files in {source_dir} changed since it was prepared (or are other files)"
    return ""


def record(prepared_dir: str, sources: str) -> None:
    """Note the `fingerprint` of the sources `prepared_dir` was prepared from, and of its own files, for
    `stale_reason`."""
    text = json.dumps(dict(sources=sources, prepared=fingerprint(prepared_dir, skip=(FINGERPRINTS_FILE,))))
    tmp = os.path.join(prepared_dir, f".{FINGERPRINTS_FILE}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(prepared_dir, FINGERPRINTS_FILE))
