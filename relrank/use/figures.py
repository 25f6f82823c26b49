"""The figures of trained rankers: ranked-image sheets (paper fig. 6), saliency (fig. 7), embeddings (fig. 5)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure  # figures drawn without pyplot: no global backend is switched
from PIL import Image, ImageDraw

from relrank.data.images import to_uint8_rgb

SHEET_TITLE = 20  # pixels above the ranked sheet's thumbnails, for its title
SHEET_CAPTION = 26  # pixels under each thumbnail, for its file name and score


def distinct_digits(values: np.ndarray, most: int = 8) -> int:
    """The fewest significant digits (3 or more) that print distinct values differently."""
    distinct = np.unique(values)
    for digits in range(3, most):
        if len({f"{v:.{digits}g}" for v in distinct}) == len(distinct):
            return digits
    return most


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """`text` cut from the left ('...name.jpg') to fit `width` pixels."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength("..." + text) > width:
        text = text[1:]
    return "..." + text


def ranking_sheet(images, scores: np.ndarray, out_png: str, names: list[str] | None = None, title: str = "",
                  columns: int = 8, thumb: int = 96, max_images: int = 64) -> str:
    """Images (paths or uint8 arrays) from weakest (top left) to strongest (bottom right), each captioned with its
    file name and score (with the digits that tell the scores apart), under `title`."""
    order = np.argsort(scores, kind="stable")
    if len(order) > max_images:  # evenly along the ranking
        order = order[np.linspace(0, len(order) - 1, max_images).round().astype(int)]
    names = names or [os.path.basename(x) if isinstance(x, str) else str(i) for i, x in enumerate(images)]
    digits = distinct_digits(np.asarray(scores)[order])
    rows = -(-len(order) // columns)
    sheet = Image.new("RGB", (columns * thumb, SHEET_TITLE + rows * (thumb + SHEET_CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    shown = f" ({len(order)} of {len(scores)}, evenly spaced)" if len(order) < len(scores) else ""
    draw.text((4, 4), _fit(draw, f"{title}: weakest (top left) to strongest (bottom right){shown}", columns * thumb - 8),
              fill="black")
    for slot, index in enumerate(order):
        x, y = (slot % columns) * thumb, SHEET_TITLE + (slot // columns) * (thumb + SHEET_CAPTION)
        sheet.paste(Image.fromarray(to_uint8_rgb(images[index], thumb)), (x, y))
        draw.text((x + 2, y + thumb + 1), _fit(draw, names[index], thumb - 4), fill="black")
        draw.text((x + 2, y + thumb + 13), f"{scores[index]:.{digits}g}", fill="dimgray")
    sheet.save(out_png)
    return out_png


def saliency_figure(image_a: np.ndarray, image_b: np.ndarray, map_a: np.ndarray, map_b: np.ndarray,
                    probability: float, out_png: str, attribute: str = "", names: tuple[str, str] = ("a", "b")) -> str:
    """Both images (titled with their names) and their saliency overlays on one colour scale, with a colour bar,
    under P(a shows more than b)."""
    fig = Figure(figsize=(7, 7))
    axes = fig.subplots(2, 2)
    for column, (image, saliency, name) in enumerate(((image_a, map_a, names[0]), (image_b, map_b, names[1]))):
        axes[0, column].imshow(image)
        axes[0, column].set_title(name, fontsize=9)
        axes[1, column].imshow(Image.fromarray(image).resize(saliency.shape[::-1]))
        overlay = axes[1, column].imshow(saliency, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[1, column].set_title(f"saliency of {name}", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.colorbar(overlay, ax=axes[1, :], shrink=0.8, label="|d P / d pixel| (1 = the larger map's maximum)")
    fig.suptitle(f"P({names[0]} shows more {attribute} than {names[1]}) = {probability:.3f}", fontsize=10)
    fig.savefig(out_png, dpi=100)
    return out_png


def embedding_figure(before: np.ndarray, after: np.ndarray, rank: np.ndarray, out_png: str, title: str = "",
                     attribute: str = "") -> str:
    """2-D embeddings of the same images before and after fine-tuning, coloured by predicted rank (1 = most)."""
    fig = Figure(figsize=(11, 5))
    axes = fig.subplots(1, 2)
    for ax, points, name in ((axes[0], before, "before fine-tuning"), (axes[1], after, "after fine-tuning")):
        mappable = ax.scatter(points[:, 0], points[:, 1], c=rank, cmap="viridis_r", s=12)
        ax.set_title(f"feature t-SNE, {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(mappable, ax=axes, label=f"predicted rank (1 = most {attribute})".replace(" )", ")"))
    if title:
        fig.suptitle(title)
    fig.savefig(out_png, dpi=100)
    return out_png
