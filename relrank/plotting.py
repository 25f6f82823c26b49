"""Figures of a run: training curves from metrics.jsonl."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from relrank.workdir import read_jsonl  # noqa: E402


def plot_curves(metrics_path: str, out_png: str, title: str = "") -> str:
    """Training loss and test pair accuracy against step, side by side; returns `out_png`."""
    rows = read_jsonl(metrics_path)
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "test_accuracy" in r]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue")
    ax_loss.set(xlabel="step", ylabel="training loss (RankNet + L2)", title="loss")
    ax_acc.plot([r["step"] for r in evals], [r["test_accuracy"] for r in evals], "o-", color="tab:green")
    ax_acc.set(xlabel="step", ylabel="correctly ordered test pairs (%)", title="test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
