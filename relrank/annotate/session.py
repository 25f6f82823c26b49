"""An annotation session: the state the server's requests share, and the ranker retraining behind them.

Per attribute it knows the pairs answered (never asked again unless `repeats`) and the pairs on offer (a
pair is answered only if it was offered: a page cannot record pairs it was never shown). An offer belongs
to the page (a browser tab) that took it: a page holds one per attribute (taking the next releases the
last, so reloads use up nothing), a page that goes away releases its offers, and an offer not answered
within OFFER_SECONDS expires. Undo retracts the latest answer given from that page. Picking a pair
reads the latest scores and never waits for training: a background thread computes the image features
once, then refits the ranker of an attribute every `retrain_every` new answers, on 4/5 of its answers for
the validation accuracy shown on the page, then on all of them for picking.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import zlib

import numpy as np

from relrank.annotate.answers import AnswerLog
from relrank.annotate.folder import Folder, decodes
from relrank.annotate.selection import WARMUP, Selector
from relrank.data.pairs import Pairs

TARGETS = {"more": 1.0, "less": 0.0, "equal": 0.5}
OFFERS_KEPT = 512  # outstanding offers remembered per attribute
OFFER_SECONDS = 1800.0  # an offer not answered by then is released
RATE_WINDOW = 300.0  # seconds over which pairs per minute is measured
PICK_ATTEMPTS = 1000  # picks tried before the pairs left are taken to involve dropped images only


class AnswerRefused(ValueError):
    """A request the session refuses (the message says why); the server answers it with status 400."""


class Session:
    def __init__(self, folder: Folder, log: AnswerLog, attributes: list[str], strategy: str = "active",
                 retrain_every: int = 20, repeats: bool = False, features=None, seed: int = 0,
                 warmup: int = WARMUP):
        """`features`: a function returning the images' features [images, D] (called once, in the background
        thread), or None for no ranker (random pairs only)."""
        self.folder, self.log, self.strategy, self.repeats = folder, log, strategy, repeats
        self.retrain_every = retrain_every
        self.attributes = list(dict.fromkeys(attributes + [a["attribute"] for a in log.answers]))
        self.lock = threading.Lock()
        self.selectors = {a: Selector(len(folder.names), strategy, seed + k, warmup=warmup)
                          for k, a in enumerate(self.attributes)}
        self.offered: dict[str, dict[frozenset, tuple[str, float]]] = {a: {} for a in self.attributes}  # -> page, when
        self.given: dict[str, list[dict]] = collections.defaultdict(list)  # page -> its answers this session
        self.answered: dict[str, dict[frozenset, int]] = {a: {} for a in self.attributes}  # index pairs -> answers
        for answer in log.answers:
            self._count(answer, +1)
        self.times: list[float] = []  # when each answer of this session came
        self.shown: set[int] = set()  # images served once (they decoded)
        self.dropped: set[int] = set()  # images that could not be served (deleted or damaged since start-up)
        self.scores: dict[str, np.ndarray] = {}
        self.val_accuracy: dict[str, float] = {}
        self.validated_on: dict[str, int] = {}  # held-out answers the validation accuracy is measured on
        self.fitted_at: dict[str, int] = {}  # answers the attribute's ranker was last fitted on
        self.ranker_state = "no ranker (--strategy=random)" if features is None else "computing image features"
        self._features, self._rankers = features, {}
        self._wake = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._train_forever, daemon=True, name="relrank-annotate-ranker")
        if features is not None:
            self.thread.start()

    # Requests.
    def _check(self, attr: str, *names: str) -> None:
        if attr not in self.selectors:
            raise AnswerRefused(f"unknown attribute {attr!r}; this session has {', '.join(self.attributes)}")
        for name in names:
            if name not in self.folder.index:
                raise AnswerRefused(f"unknown image {name!r}")
            if self.folder.index[name] in self.dropped:
                raise AnswerRefused(f"image {name!r} can no longer be read (deleted or damaged); it was dropped")

    def image_file(self, name: str) -> str | None:
        """The file of an image to serve, or None for a name the folder does not hold or an image that does not
        decode (deleted or damaged since start-up): that one is dropped from the pool, and named once."""
        index = self.folder.index.get(name)
        if index is None or index in self.dropped:
            return None
        path = self.folder.path(name)
        if index not in self.shown:
            if not decodes(path):
                self._drop(index)
                return None
            self.shown.add(index)
        return path

    def _drop(self, index: int) -> None:
        """Leave an image that cannot be read out of the pool, saying so once."""
        with self.lock:
            if index in self.dropped:
                return
            self.dropped.add(index)
        print(f"dropped {self.folder.names[index]}: it cannot be read (deleted or damaged); its pairs are not asked",
              file=sys.stderr)

    def _key(self, a: str, b: str) -> frozenset:
        return frozenset((self.folder.index[a], self.folder.index[b]))

    def _count(self, answer: dict, change: int) -> None:
        counts = self.answered[answer["attribute"]]
        key = self._key(answer["a"], answer["b"])
        counts[key] = counts.get(key, 0) + change
        if not counts[key]:
            del counts[key]

    def _release(self, attr: str, page: str) -> None:
        """Release `page`'s offers for `attr`, and every offer that has expired."""
        now = time.time()
        offered = self.offered[attr]
        for key in [k for k, (by, when) in offered.items() if (page and by == page) or now - when > OFFER_SECONDS]:
            del offered[key]

    def next_pair(self, attr: str, page: str = "") -> dict:
        """The next pair to ask for `attr` ({"a", "b"} names), now on offer to `page` (whose earlier offer for
        `attr` is released; "" for API clients, which may hold many); {"done": True} when none is left."""
        self._check(attr)
        with self.lock:
            self._release(attr, page)
            offered, answered = self.offered[attr], self.answered[attr]
            excluded = {}  # pairs with a dropped image, as picked
            taken = collections.ChainMap(offered, excluded) if self.repeats else \
                collections.ChainMap(offered, answered, excluded)
            for _ in range(PICK_ATTEMPTS):
                pick = self.selectors[attr].pick(self.scores.get(attr), taken, sum(answered.values()))
                if pick is None or not self.dropped.intersection(pick):
                    break
                excluded[frozenset(pick)] = 0.0
            if pick is None or self.dropped.intersection(pick):
                return dict(attr=attr, done=True)
            offered[frozenset(pick)] = (page, time.time())
            while len(offered) > OFFERS_KEPT:
                offered.pop(next(iter(offered)))
        return dict(attr=attr, a=self.folder.names[pick[0]], b=self.folder.names[pick[1]])

    def answer(self, attr: str, a: str, b: str, label: str, annotator: str = "", page: str = "") -> dict:
        """Record an answer to a pair on offer to `page` (on disk when this returns)."""
        self._check(attr, a, b)
        if label not in TARGETS:
            raise AnswerRefused(f"label {label!r} is not more, less or equal")
        key = self._key(a, b)
        with self.lock:
            offer = self.offered[attr].get(key)
            if offer is None or offer[0] != page:
                raise AnswerRefused(f"{a!r} vs {b!r} is not on offer to this page for {attr!r} (it expired, was "
                                    f"taken by another page, or never offered): ask /api/next for a pair")
            answer = self.log.add(a, b, attr, label, annotator)
            del self.offered[attr][key]
            self._count(answer, +1)
            self.given[page].append(answer)
            self.times.append(time.time())
        self._wake.set()
        return answer

    def skip(self, attr: str, a: str, b: str, page: str = "") -> None:
        """Withdraw a pair on offer to `page` without answering it (it may be offered again later)."""
        self._check(attr, a, b)
        with self.lock:
            key = self._key(a, b)
            if self.offered[attr].get(key, ("",))[0] == page:
                self.offered[attr].pop(key, None)

    def leave(self, page: str) -> None:
        """A page went away (its tab closed): its offers are released."""
        with self.lock:
            for attr in self.attributes:
                self._release(attr, page)

    def undo(self, annotator: str = "", page: str = "") -> dict | None:
        """Retract the latest answer `annotator` gave from `page` (from a page: only its own answers of this
        session; without: the annotator's latest in pairs.csv). Its pair is on offer to `page` again."""
        with self.lock:
            if page:
                given = self.given[page]
                mine = [k for k, g in enumerate(given) if g["annotator"] == self.log.annotator_of(annotator)]
                answer = self.log.retract(annotator, given.pop(mine[-1])) if mine else None
            else:
                answer = self.log.retract(annotator)
            if answer is not None:
                self._count(answer, -1)
                self._release(answer["attribute"], page)
                self.offered[answer["attribute"]][self._key(answer["a"], answer["b"])] = (page, time.time())
                if self.times:
                    self.times.pop()
        return answer

    def status(self) -> dict:
        now = time.time()
        recent = [t for t in self.times if now - t <= RATE_WINDOW]
        span = max(now - recent[0], 60.0) if recent else RATE_WINDOW
        counts = {a: sum(self.answered[a].values()) for a in self.attributes}
        return dict(
            images=len(self.folder.names), attributes=self.attributes, answers=counts,
            answers_this_session=len(self.times), pairs_per_minute=round(60.0 * len(recent) / span, 1),
            strategy=self.strategy, ranker=self.ranker_state,
            val_accuracy={a: (None if np.isnan(v) else round(v, 1)) for a, v in self.val_accuracy.items()},
            validated_on=dict(self.validated_on), fitted_on=dict(self.fitted_at), pairs_csv=self.folder.pairs_csv)

    # The ranker, in the background.
    def _train_forever(self) -> None:
        from relrank.annotate.linear import LinearRanker

        tenths = [-1]

        def progress(done: int, total: int) -> None:
            if self._stop:
                raise _Stopped
            self._state(f"computing image features {done}/{total}", announce=done * 10 // total > tenths[0])
            tenths[0] = done * 10 // total

        try:
            table = self._features(progress)
        except _Stopped:
            return
        except Exception as error:  # noqa: BLE001 - pairs stay random; said on the page and in the terminal
            self._state(f"no ranker: features failed ({type(error).__name__}: {error})"[:300] +
                        "; pairs are picked at random")
            return
        failed = np.flatnonzero(np.isnan(table).any(axis=1))
        for index in failed:
            self._drop(int(index))
        table = np.nan_to_num(table)
        self._state("features ready" + (f" ({len(failed)} image(s) dropped)" if len(failed) else "") +
                    "; waiting for answers")
        while not self._stop:
            with self.log.lock:
                standing = list(self.log.answers)
            for attr in self.attributes:
                answers = [a for a in standing if a["attribute"] == attr]
                if len(answers) >= max(self.retrain_every, 2) and \
                        len(answers) - self.fitted_at.get(attr, 0) >= self.retrain_every:
                    started = time.perf_counter()
                    if attr not in self._rankers:
                        self._rankers[attr] = (LinearRanker(table), LinearRanker(table))
                    self._refit(attr, answers, *self._rankers[attr])
                    self._state(f"refitted {attr} on {len(answers)} answers in "
                                f"{1000 * (time.perf_counter() - started):.0f} ms")
            self._wake.wait(timeout=5.0)
            self._wake.clear()

    def _state(self, text: str, announce: bool = True) -> None:
        """The ranker's state, on the page's status line and (each change worth a line) in the terminal."""
        self.ranker_state = text
        if announce:
            print(f"ranker: {text}", file=sys.stderr, flush=True)

    def _refit(self, attr: str, answers: list[dict], validated, picking) -> None:
        index = self.folder.index
        a = np.array([index[x["a"]] for x in answers])
        b = np.array([index[x["b"]] for x in answers])
        target = np.array([TARGETS[x["label"]] for x in answers], np.float32)
        held = np.array([zlib.crc32("\0".join(sorted((x["a"], x["b"]))).encode()) % 5 == 0 for x in answers])
        if held.any() and (~held).any():
            validated.fit(Pairs(a[~held], b[~held], target[~held]))
            self.val_accuracy[attr] = validated.accuracy(Pairs(a[held], b[held], target[held]))
            self.validated_on[attr] = int(held.sum())
        picking.fit(Pairs(a, b, target))
        self.scores[attr] = picking.scores()
        self.fitted_at[attr] = len(answers)

    def close(self, timeout: float = 60.0) -> None:
        """Stop the ranker's thread (after the chunk of images or the refit it is at)."""
        self._stop = True
        self._wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout)


class _Stopped(Exception):
    """Raised in the ranker's thread to stop computing features when the session closes."""
