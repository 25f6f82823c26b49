"""Every figure relrank draws: training curves, ranked-image sheets (paper fig. 6), saliency (fig. 7), embeddings (fig. 5)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from relrank.images import to_uint8_rgb  # noqa: E402
from relrank.workdir import read_jsonl  # noqa: E402


def plot_curves(metrics_path: str, out_png: str, title: str = "") -> str:
    """Training loss and pair accuracy (test, and validation if held out; the mean over attributes)
    against step, side by side; returns `out_png`."""
    rows = read_jsonl(metrics_path)
    train = [r for r in rows if "loss" in r]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
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
    plt.close(fig)
    return out_png


def ranking_sheet(images, scores: np.ndarray, out_png: str, columns: int = 8,
                  thumb: int = 96, max_images: int = 64) -> str:
    """Images (paths or uint8 arrays) from weakest to strongest, row by row, each captioned with its score."""
    order = np.argsort(scores)
    if len(order) > max_images:  # evenly along the ranking
        order = order[np.linspace(0, len(order) - 1, max_images).round().astype(int)]
    rows = -(-len(order) // columns)
    caption = 16
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for slot, index in enumerate(order):
        x, y = (slot % columns) * thumb, (slot // columns) * (thumb + caption)
        sheet.paste(Image.fromarray(to_uint8_rgb(images[index], thumb)), (x, y))
        draw.text((x + 3, y + thumb + 2), f"{scores[index]:.3g}", fill="black")
    sheet.save(out_png)
    return out_png


def saliency_figure(image_a: np.ndarray, image_b: np.ndarray, map_a: np.ndarray, map_b: np.ndarray,
                    probability: float, out_png: str, attribute: str = "") -> str:
    """Both images and their saliency overlays, titled with P(a shows more than b)."""
    fig, axes = plt.subplots(2, 2, figsize=(7, 7))
    for column, (image, saliency, name) in enumerate(((image_a, map_a, "a"), (image_b, map_b, "b"))):
        axes[0, column].imshow(image)
        axes[0, column].set_title(f"image {name}")
        axes[1, column].imshow(Image.fromarray(image).resize(saliency.shape[::-1]))
        axes[1, column].imshow(saliency, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[1, column].set_title(f"saliency {name}")
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"P(a shows more {attribute} than b) = {probability:.3f}")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def embedding_figure(before: np.ndarray, after: np.ndarray, rank: np.ndarray, out_png: str, title: str = "") -> str:
    """2-D embeddings of the same images before and after fine-tuning, coloured by predicted rank."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, points, name in ((axes[0], before, "before fine-tuning"), (axes[1], after, "after fine-tuning")):
        mappable = ax.scatter(points[:, 0], points[:, 1], c=rank, cmap="viridis", s=12)
        ax.set_title(f"fc7 t-SNE, {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(mappable, ax=axes, label="predicted rank (0 = weakest)")
    if title:
        fig.suptitle(title)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
