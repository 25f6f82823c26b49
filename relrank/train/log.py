"""A run's training log: metrics.jsonl, TensorBoard event files beside it, and curves.png drawn from it."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Callable

import numpy as np
from matplotlib.figure import Figure  # drawn without pyplot: no global backend is switched

from relrank.errors import UserError
from relrank.parallel import distributed
from relrank.run.workdir import read_jsonl, write_atomic

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch: tensorboardX imports torch when it is installed (for
    graphs and videos, unused here), which would add over a second and hundreds of MiB to every training process."""
    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects when torch is absent
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


SummaryWriter = _summary_writer_class()  # imported with the module, never mid-run


class TrainingLog:
    """<workdir>/metrics.jsonl and TensorBoard events in <workdir> (`tensorboard --logdir runs/`): training
    metrics averaged over each logging interval, and evaluations.

    Step metrics stay on the device until `flush`, so logging never waits for a step to finish.
    Processes other than 0 check the loss but write nothing.
    """

    def __init__(self, workdir: str, steps_per_epoch: int, start_step: int, last_checkpoint: Callable[[], str],
                 on_interval: Callable[[list[tuple[int, dict]]], None] = lambda metrics: None):
        self.workdir = workdir
        self.path = os.path.join(workdir, METRICS_FILE)
        self.on_interval = on_interval
        self.writes = distributed.is_main()
        self.steps_per_epoch = steps_per_epoch
        self.start_step = start_step
        self.last_checkpoint = last_checkpoint
        self.pending: list[tuple[int, dict]] = []
        self.interval_start, self.interval_images = time.perf_counter(), 0
        self._events = None
        if self.writes and os.path.exists(self.path):  # rows of a run that stopped before checkpointing them
            rows = [r for r in read_jsonl(self.path) if r.get("step", 0) <= start_step]
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def add(self, step: int, metrics: dict, images: int) -> None:
        self.pending.append((step, metrics))
        self.interval_images += images

    def flush(self) -> dict | None:
        """Fetch the pending metrics, stop on a non-finite loss, and write their mean as one row."""
        if not self.pending:
            return None
        fetched = [(s, {k: float(v) for k, v in m.items()}) for s, m in self.pending]
        self.pending = []
        for s, m in fetched:
            if not math.isfinite(m["loss"]):
                raise UserError(f"loss became {m['loss']} at step {s}; training stopped. "
                                f"Last good checkpoint: {self.last_checkpoint()}")
        elapsed = time.perf_counter() - self.interval_start
        counted = sum(m["pairs_counted"] for _, m in fetched)
        row = dict(
            step=fetched[-1][0], epoch=round(fetched[-1][0] / self.steps_per_epoch, 4),
            loss=float(np.mean([m["loss"] for _, m in fetched])),
            rank_loss=float(np.mean([m["rank_loss"] for _, m in fetched])),
            train_pair_accuracy=round(100 * sum(m["pairs_correct"] for _, m in fetched) / counted, 2) if counted else None,
            score_spread=float(min(m["score_spread"] for _, m in fetched)),
            images_per_s=round(self.interval_images / max(elapsed, 1e-9), 1),
        )
        self.write(**row)
        self.on_interval(fetched)
        self.interval_start, self.interval_images = time.perf_counter(), 0
        return row

    def write(self, **row) -> None:
        """One row of metrics.jsonl; its numbers (per attribute too) also go to TensorBoard at its step."""
        if not self.writes:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for name, value in _scalars(row):
            self.events.add_scalar(name, value, row["step"])

    @property
    def events(self):
        """The TensorBoard writer, opened on first use; events after the resumed step are hidden (purged)."""
        if self._events is None:
            self._events = SummaryWriter(self.workdir, purge_step=self.start_step + 1 if self.start_step else None)
        return self._events

    def close(self) -> None:
        if self._events is not None:
            self._events.close()


def _scalars(row: dict):
    """(tag, value) for each finite number of a row: 'train/loss', 'test/accuracy', 'test/accuracy/Male'."""
    for name, value in row.items():
        if name in ("step", "epoch"):
            continue
        if isinstance(value, dict):
            split = name.split("_accuracy")[0]
            yield from ((f"{split}/accuracy/{attr}", v) for attr, v in value.items() if math.isfinite(v))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            split = name.split("_accuracy")[0]
            yield (f"{split}/accuracy", value) if name.endswith("_accuracy") else (f"train/{name}", value)


def plot_curves(metrics_path: str, out_png: str, title: str = "") -> str:
    """Training loss and pair accuracy (test, and validation if held out; the mean over attributes)
    against step, side by side; returns `out_png`."""
    rows = read_jsonl(metrics_path)
    train = [r for r in rows if "loss" in r]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue")
    ax_loss.set(xlabel="step", ylabel="training loss (RankNet + L2)", title="loss")
    for name, color in (("test", "tab:green"), ("val", "tab:orange")):
        evals = [r for r in rows if f"{name}_accuracy" in r]
        if evals:
            ax_acc.plot([r["step"] for r in evals], [r[f"{name}_accuracy"] for r in evals], "o-", color=color,
                        label=name)
    ax_acc.set(xlabel="step", ylabel="correctly ordered pairs (%)", title="accuracy")
    if ax_acc.lines:
        ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return out_png
