"""Using a trained ranker: scoring CLI and sheets, saliency, embeddings, and the notebook."""

import csv
import os

import jax
import numpy as np
from PIL import Image

from conftest import REPO, run_cli
import relrank
from relrank.data.datasets import load_dataset
from relrank.data.images import to_uint8_rgb
from relrank.use.figures import SHEET_CAPTION, SHEET_TITLE


def figure_is_drawn(path, size):
    """The PNG has exactly the (width, height) its figure size and dpi give, and is not blank."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    assert (pixels.shape[1], pixels.shape[0]) == size
    assert pixels.std() > 10


def test_score_cli_writes_ranking_and_sheet_and_skips_bad_files(trained_run, tmp_path):
    workdir, _ = trained_run
    ranker = relrank.load(workdir)
    data = load_dataset("synthetic", data_dir=ranker.config.data_dir)
    folder = tmp_path / "images"
    os.makedirs(folder / "nested")
    images = data.load_images(np.arange(1200, 1220), 64)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / ("nested" if i % 2 else "") / f"{i}.png")
    Image.fromarray(images[0]).convert("L").save(folder / "gray.png")
    Image.fromarray(images[1]).convert("RGBA").resize((50, 70)).save(folder / "rgba.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    out, sheet = str(tmp_path / "ranking.csv"), str(tmp_path / "sheet.png")
    result = run_cli(os.path.join("relrank", "__main__.py"), "score", f"--workdir={workdir}", str(folder),
                     f"--out={out}", f"--sheet={sheet}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped 1 unreadable file(s)" in result.stderr and "broken.jpg" in result.stderr
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 22
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and [int(r["rank"]) for r in rows] == list(range(1, 23))
    by_name = {os.path.basename(r["image"]): float(r["score"]) for r in rows}
    np.testing.assert_allclose(by_name["3.png"], ranker.score(images[3:4])[0], rtol=1e-5)
    # The sheet: a title, then 8 thumbnails (96 px + a caption of name and score) a row, weakest first.
    with Image.open(sheet) as png:
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.shape == (SHEET_TITLE + 3 * (96 + SHEET_CAPTION), 8 * 96, 3)
    assert pixels[:SHEET_TITLE].min() < 128  # the title is written
    weakest, strongest = rows[-1]["image"], rows[0]["image"]
    np.testing.assert_array_equal(pixels[SHEET_TITLE:SHEET_TITLE + 96, :96], to_uint8_rgb(weakest, 96))
    last = 21  # slot of the 22nd image: row 2, column 5
    y, x = SHEET_TITLE + (last // 8) * (96 + SHEET_CAPTION), (last % 8) * 96
    np.testing.assert_array_equal(pixels[y:y + 96, x:x + 96], to_uint8_rgb(strongest, 96))
    assert pixels[y + 96:y + 96 + SHEET_CAPTION, x:x + 96].min() < 128  # its caption is written


def test_saliency_maps_and_figure(trained_run, tmp_path):
    from relrank.use.saliency import pair_saliency
    from relrank.model.network import scores

    workdir, _ = trained_run
    ranker = relrank.load(workdir)
    data = load_dataset("synthetic", data_dir=ranker.config.data_dir)
    a, b = data.load_images(np.array([1200, 1201]), 32)
    p, map_a, map_b = pair_saliency(ranker, a, b, sigma=0.0)
    np.testing.assert_allclose(p, ranker.compare(a[None], b[None])[0], rtol=1e-5)
    for saliency in (map_a, map_b):
        assert saliency.shape == (32, 32) and saliency.min() >= 0
    assert max(map_a.max(), map_b.max()) == 1.0  # one scale for both maps
    # Finite differences: nudging the most salient pixel of a moves P(a > b) more than the least salient one.
    score = jax.jit(lambda x: scores(ranker.network, ranker.params, x))

    def probability(x):
        r = np.asarray(score(x.astype(np.float32)))
        return 1 / (1 + np.exp(-(r[0] - r[1])))

    base = np.stack([a, b]).astype(np.float32)
    effects = []
    for y, x in (np.unravel_index(map_a.argmax(), map_a.shape), np.unravel_index(map_a.argmin(), map_a.shape)):
        nudged = base.copy()
        nudged[0, y, x, :] += 20.0
        effects.append(abs(probability(nudged) - probability(base)))
    assert effects[0] > effects[1]
    out = str(tmp_path / "saliency.png")
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    result = run_cli(os.path.join("relrank", "__main__.py"), "saliency", f"--workdir={workdir}",
                     str(tmp_path / "a.png"), str(tmp_path / "b.png"), f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    figure_is_drawn(out, (700, 700))


def test_embedding_figure(trained_run, tmp_path):
    workdir, _ = trained_run
    out = str(tmp_path / "embedding.png")
    result = run_cli(os.path.join("relrank", "__main__.py"), "embed", f"--workdir={workdir}", f"--out={out}",
                     "--max_images=120")
    assert result.returncode == 0, result.stderr[-2000:]
    figure_is_drawn(out, (1100, 500))


def test_use_cli_errors(tmp_path):
    result = run_cli(os.path.join("relrank", "__main__.py"), "score", f"--workdir={tmp_path}", str(tmp_path))
    assert result.returncode == 2 and "holds no checkpoint" in result.stderr.strip().splitlines()[-1]


def test_saliency_notebook_runs_headless_from_its_folder_on_a_joint_run(joint_runs):
    """Jupyter starts in notebooks/; the README recommends --attr=all."""
    import nbformat
    from nbclient import NotebookClient

    root, _ = joint_runs
    notebook = nbformat.read(os.path.join(REPO, "notebooks", "saliency.ipynb"), as_version=4)
    os.environ["RELRANK_WORKDIR"] = os.path.join(root, "seed_0")
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": os.path.join(REPO, "notebooks")}}).execute()
    finally:
        del os.environ["RELRANK_WORKDIR"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in outputs)
