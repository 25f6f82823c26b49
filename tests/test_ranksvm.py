"""The RankSVM baseline: its optimum, its protocol result on real PubFig features, and its CLI."""

import json
import os

import numpy as np
import pytest
import scipy.optimize

from conftest import run_cli
from relrank.data.pairs import Pairs
from relrank.use.ranksvm import fit_ranksvm, objective, pair_differences

PUBFIG = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pubfig"))


def test_newton_solution_is_the_optimum():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6))
    truth = features @ rng.normal(size=6)
    a, b = rng.integers(0, 40, 300), rng.integers(0, 40, 300)
    keep = a != b
    a, b = a[keep], b[keep]
    target = np.where(np.abs(truth[a] - truth[b]) < 0.2, 0.5, (truth[a] > truth[b]).astype(float))
    pairs = Pairs(a, b, target.astype(np.float32))
    w = fit_ranksvm(features, pairs, c=0.1)
    ordered, similar = pair_differences(features, pairs)
    reference = scipy.optimize.minimize(lambda v: objective(v, ordered, similar, 0.1), np.zeros(6), method="BFGS",
                                        options=dict(gtol=1e-10)).x
    np.testing.assert_allclose(w, reference, atol=1e-5)
    assert objective(w, ordered, similar, 0.1) <= objective(reference, ordered, similar, 0.1) + 1e-9
    scores = features @ w
    assert np.corrcoef(scores, truth)[0, 1] > 0.95


def test_ranksvm_on_fc7_features_runs_and_evaluates(data_dir, tmp_path):
    workdir = str(tmp_path / "svm")
    result = run_cli("train.py", f"--data_dir={data_dir}", f"--workdir={workdir}", "--method=ranksvm",
                     "--ranksvm_features=fc7", "--attr=brightness")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    evaluated = run_cli("evaluate.py", f"--workdir={workdir}", "--json")
    (row,) = json.loads(evaluated.stdout)["results"]
    assert abs(row["accuracy"] - summary["test_accuracy"]) < 1e-9 and row["num_pairs"] == 3000
    assert summary["test_accuracy"] > 60  # even a random backbone's fc7 orders brightness
    missing = run_cli("train.py", f"--data_dir={data_dir}", f"--workdir={tmp_path / 'x'}", "--method=ranksvm")
    assert missing.returncode == 2 and "ships no features" in missing.stderr


@pytest.mark.skipif(not os.path.exists(os.path.join(PUBFIG, "data.mat")), reason=f"real PubFig data not found at {PUBFIG}")
def test_ranksvm_on_pubfig_features_matches_parikh_grauman(tmp_path):
    """GIST+colour features, C = 0.1: within 2 points of Parikh & Grauman's own predictions (mean 79.64)."""
    workdir = str(tmp_path / "pubfig")
    common = [f"--data_dir={tmp_path / 'tfds'}"]
    result = run_cli("train.py", "--dataset=pubfig", "--attr=all", "--method=ranksvm", f"--manual_dir={PUBFIG}",
                     f"--workdir={workdir}", *common)
    assert result.returncode == 0, result.stderr[-2000:]
    evaluated = run_cli("evaluate.py", f"--workdir={workdir}", "--json", *common)
    accuracies = {r["attr"]: r["accuracy"] for r in json.loads(evaluated.stdout)["results"]}
    assert len(accuracies) == 11
    saved = np.load(os.path.join(workdir, "ranksvm.npz"))  # one run, one w per attribute
    assert saved["w"].shape == (saved["features"].shape[1], 11)
    print("RankSVM on PubFig:", {k: round(v, 2) for k, v in accuracies.items()})
    assert abs(np.mean(list(accuracies.values())) - 79.64) <= 2.0
