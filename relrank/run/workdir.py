"""A run's workdir: checked before any work, held by one writer at a time, its files written atomically.

The lock is an `fcntl.flock` on <workdir>/.lock, which holds the writer's PID.
The operating system releases it when the process ends, however it ends, so a
crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil

from relrank.errors import UserError

LOCK_FILE = ".lock"


def check_usable(workdir: str) -> None:
    """A one-line error now if `workdir` cannot become a writable folder (nothing is created)."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"workdir {workdir} is a file, not a folder; use another --workdir")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"workdir {workdir} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"workdir {workdir} is not writable ({existing} does not allow it); use another --workdir")


@contextlib.contextmanager
def exclusive(workdir: str):
    """Create `workdir` if needed and hold it for this process; a second writer gets a one-line error."""
    check_usable(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UserError(f"cannot write to workdir {workdir}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise UserError(f"cannot lock workdir {workdir}: {error.strerror}") from None
            raise UserError(f"workdir {workdir} is in use by process {_holder(fd)}; wait for it to end "
                            f"or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "(unknown PID)"


def write_atomic(path: str, text: str | bytes) -> None:
    """Replace `path` with `text` all at once: a crash leaves the old file or the new one, never half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
    """The JSON objects of a .jsonl file, skipping lines that do not parse (e.g. cut short by a crash)."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def remove_if_unused(workdir: str) -> None:
    """Remove a workdir this process created when a run fails before its first checkpoint: nothing is left behind."""
    checkpoints = os.path.join(workdir, "checkpoints")
    if os.path.isdir(workdir) and not (os.path.isdir(checkpoints) and any(
            name.isdigit() for name in os.listdir(checkpoints))):
        shutil.rmtree(workdir, ignore_errors=True)
