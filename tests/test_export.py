"""`relrank export`: the artifact scores as `relrank.load(W).score_all` does, loaded by the README's snippet in a
process that imports neither relrank nor flax."""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np

import relrank
from relrank.cli import main

REPO = pathlib.Path(__file__).resolve().parents[1]


def readme_loader() -> str:
    """The README's Export snippet, up to the line that calls it on the README's file name."""
    text = (REPO / "README.md").read_text().split("## Export", 1)[1]
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    return code.split("\nscore, about = ", 1)[0]


def test_an_exported_ranker_scores_without_relrank_at_two_batch_sizes(tmp_path):
    shutil.copytree(REPO / "tests" / "fixtures" / "run_before_layout" / "run", tmp_path / "run")
    out = tmp_path / "ranker.jaxexport"
    assert main(["export", f"--workdir={tmp_path / 'run'}", f"--out={out}"]) == 0
    about = json.loads((tmp_path / "ranker.jaxexport.json").read_text())
    ranker = relrank.load(str(tmp_path / "run"), progress=False)
    assert about["attributes"] == list(ranker.attrs) and about["image_size"] == 32 and about["step"] == 3
    for n in (1, 5):
        images = np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        np.save(tmp_path / f"images_{n}.npy", images)
        np.save(tmp_path / f"expected_{n}.npy", ranker.score_all(images))
    check = readme_loader() + f"""
import sys
score, about = load_ranker({str(out)!r})
for n in (1, 5):
    got = np.asarray(score(np.load({str(tmp_path)!r} + f"/images_{{n}}.npy")))
    want = np.load({str(tmp_path)!r} + f"/expected_{{n}}.npy")
    assert got.shape == want.shape == (n, 3), (got.shape, want.shape)
    assert np.allclose(got, want, rtol=0, atol=1e-5), np.abs(got - want).max()
print(sorted(m for m in ("relrank", "flax", "orbax", "relrank_datasets") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_a_ranksvm_run_is_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "svm"
    run.mkdir()
    config = relrank.make_config(method="ranksvm", attr="size")
    (run / "config.json").write_text(json.dumps(config.to_json()))
    assert main(["export", f"--workdir={run}", f"--out={tmp_path / 'r.jaxexport'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {run} is a RankSVM run, which scores the dataset's stored features, not images: there is no image "
        f"scorer to export"]
