"""The answers: DIR/pairs.csv, append-only, in the pairs_csv format (`--dataset=pairs_csv` reads it as it is).

One line per answer (image_a, image_b, attribute, label = more / less / equal, annotator, time) and one per
retraction (label `undo`: it withdraws that annotator's latest answer to the pair). Each line is written
with one write() to a file opened for appending and fsynced before the answer is acknowledged, under the
server's lock: a line is never interleaved with another, and kill -9 loses at most the answer in flight.
Before each write the file must still be the one the server read and wrote (same inode and size: not
edited, replaced or truncated meanwhile); a write that fails (a full disk) is cut back off the file, so no
torn line is left and an answer reported as failed never counts after a restart. An existing file is read
with the builder's own parser (an error names its line) and never rewritten.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time

from relrank.errors import UserError
from relrank_datasets.pairs_csv.pairs_csv_dataset_builder import RETRACTION, read_annotations, read_text
from relrank_datasets.sources import SourceFilesError

HEADER = ("image_a", "image_b", "attribute", "label", "annotator", "time")
WORDS = {1.0: "more", 0.0: "less", 0.5: "equal"}


class AnswerNotSaved(OSError):
    """An answer that is not on disk (the message says why); the server answers it with status 503."""


class AnswerLog:
    """Appends answers and retractions to a pairs.csv; `answers` are the ones standing, oldest first."""

    def __init__(self, path: str, images: set[str]):
        self.path = path
        self.lock = threading.Lock()
        stat = os.stat(path) if os.path.exists(path) else None
        self.written = (stat.st_ino, stat.st_size) if stat else None  # the file as read: appends check it is still so
        if stat and stat.st_size > 0:
            self.columns, self.answers, needs_newline = self._read(path, images)
        else:
            self.columns, self.answers, needs_newline = HEADER, [], False
            self._append(",".join(HEADER) + "\n", create=stat is None)
        if needs_newline:  # a file saved without a final line end (Excel): end its last line, do not join it
            self._append("\n")

    @staticmethod
    def _read(path: str, images: set[str]) -> tuple[tuple[str, ...], list[dict], bool]:
        try:
            rows = read_annotations(path, images, allow_empty=True)
        except SourceFilesError as error:
            raise UserError(f"{error}\n(relrank annotate appends to {path} and never rewrites it: fix or move it)"
                            ) from None
        text = read_text(path)
        columns = tuple(next(csv.reader(io.StringIO(text))))
        answers = [dict(a=r["a"], b=r["b"], attribute=r["attribute"], label=WORDS[r["target"]],
                        annotator=r["annotator"]) for r in rows]
        return columns, answers, not text.endswith(("\n", "\r"))

    def _append(self, text: str, create: bool = False) -> None:
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self.path, flags, 0o644)
        try:
            before = os.fstat(fd)
            if not create and (before.st_ino, before.st_size) != self.written:
                raise AnswerNotSaved(f"{self.path} changed on disk while the server ran (edited, replaced or "
                                     f"truncated): answers are not saved; restart relrank annotate to read it again")
            data = text.encode()
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(f"short write to {self.path}")
                os.fsync(fd)
            except OSError as error:
                os.ftruncate(fd, before.st_size)  # no torn line: the file is as it was
                os.fsync(fd)
                raise AnswerNotSaved(f"the answer could not be saved to {self.path} ({error.strerror or error}); "
                                     f"free some space or fix the folder, then answer again") from None
            self.written = (before.st_ino, before.st_size + len(data))
        finally:
            os.close(fd)
        if create:  # the new file's directory entry too
            dir_fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _line(self, a: str, b: str, attribute: str, label: str, annotator: str) -> str:
        values = dict(image_a=a, image_b=b, attribute=attribute, label=label, annotator=annotator,
                      time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([values.get(c, "") for c in self.columns])
        return out.getvalue()

    def annotator_of(self, annotator: str) -> str:
        """Who an answer is recorded as: nobody in particular when the file has no annotator column."""
        return annotator if "annotator" in self.columns else ""

    def add(self, a: str, b: str, attribute: str, label: str, annotator: str = "") -> dict:
        """Append an answer (label more / less / equal: how a compares with b); on disk when this returns."""
        if label not in WORDS.values():
            raise ValueError(f"label {label!r} is not more, less or equal")
        annotator = self.annotator_of(annotator)
        answer = dict(a=a, b=b, attribute=attribute, label=label, annotator=annotator)
        with self.lock:
            self._append(self._line(a, b, attribute, label, annotator))
            self.answers.append(answer)
        return answer

    def retract(self, annotator: str = "", answer: dict | None = None) -> dict | None:
        """Withdraw `annotator`'s latest standing answer, or their latest to the pair and attribute of `answer`
        (what an `undo` line withdraws, as the builder reads it), with a recorded `undo` line; None when there is
        none."""
        annotator = self.annotator_of(annotator)
        wanted = None if answer is None else ({answer["a"], answer["b"]}, answer["attribute"])
        with self.lock:
            for k in range(len(self.answers) - 1, -1, -1):
                answer = self.answers[k]
                if answer["annotator"] == annotator and (wanted is None or
                                                         wanted == ({answer["a"], answer["b"]}, answer["attribute"])):
                    self._append(self._line(answer["a"], answer["b"], answer["attribute"], RETRACTION, annotator))
                    return self.answers.pop(k)
        return None
