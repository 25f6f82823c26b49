"""A run that has not learned never looks like one that has; recipes follow the pair structure; no silent
full VGG-16 from random init."""

import json
import math
import os

import numpy as np
import pytest

from relrank.configs import make_config
from relrank.configs import scratch
from relrank.data.pairs import PairStructure, Pairs
from relrank.train.monitor import LN2, LearningMonitor, at_chance, constant_attributes

from conftest import run_cli


def interval(first, last, rank_loss, correct=0.0, counted=0.0, spread=0.5):
    return [(s, dict(rank_loss=rank_loss, pairs_correct=correct, pairs_counted=counted, score_spread=spread))
            for s in range(first, last + 1)]


def test_constant_training_scores_for_an_epoch_after_warmup_are_a_collapse():
    monitor = LearningMonitor(("a",), total_steps=400, steps_per_epoch=100, warmup_steps=50)
    found = []
    for start in range(1, 141, 10):  # constant from the start: the warmup's steps do not count
        found += monitor.steps(interval(start, start + 9, LN2, spread=0.0))
    assert found == []  # steps 51..140 are not yet a whole epoch
    found += monitor.steps(interval(141, 150, LN2, spread=1e-7))
    assert [f.kind for f in found] == ["collapsed"] and found[0].step == 150 and "same score since step 51" in found[0].seen
    assert monitor.verdict() is found[0]
    assert monitor.steps(interval(151, 160, LN2, spread=0.0)) == []  # said once


def test_a_loss_near_ln2_alone_is_no_collapse_and_one_well_above_it_is_stuck():
    monitor = LearningMonitor(("a",), total_steps=1000, steps_per_epoch=50, warmup_steps=0)
    for start in range(1, 501, 10):  # slow learning with many ties: the loss stays near ln 2, scores vary
        assert monitor.steps(interval(start, start + 9, LN2 + 0.01)) == []
    for start in range(501, 741, 10):
        assert monitor.steps(interval(start, start + 9, 3.0)) == []
    assert monitor.steps(interval(741, 750, 0.5)) == []  # better again: the watch starts anew
    for start in range(751, 991, 10):
        assert monitor.steps(interval(start, start + 9, 3.0)) == []  # 240 steps: two epochs, not a quarter of the run
    found = monitor.steps(interval(991, 1000, 3.0))
    assert [f.kind for f in found] == ["stuck"] and "above ln 2" in found[0].seen and "since step 751" in found[0].seen


def test_a_healthy_run_is_never_flagged():
    monitor = LearningMonitor(("a", "b"), total_steps=300, steps_per_epoch=100, warmup_steps=10)
    rng = np.random.default_rng(0)
    for start in range(1, 301, 10):
        loss = LN2 * math.exp(-start / 100)
        assert monitor.steps(interval(start, start + 9, loss, correct=24.0, counted=30.0)) == []
        if (start + 9) % 100 == 0:
            scores = rng.normal(size=(50, 2))
            assert monitor.evaluation(start + 9, {"test": scores, "val": scores}, (80.0, 500)) == []
    assert monitor.verdict() is None and monitor.training_accuracy() == (80.0, 3000)


def test_constant_scores_at_an_evaluation_are_a_collapse():
    scores = np.full((40, 2), 0.37, np.float32)
    assert constant_attributes(scores, ("a", "b")) == ["a", "b"]
    scores[:, 1] += np.linspace(0, 1e-2, 40)
    assert constant_attributes(scores, ("a", "b")) == ["a"]
    monitor = LearningMonitor(("a", "b"), total_steps=900, steps_per_epoch=100, warmup_steps=0)
    assert monitor.evaluation(100, {"test": scores}) == []  # one attribute still varies: the backbone lives
    found = monitor.evaluation(200, {"test": np.zeros((40, 2))})
    assert [f.kind for f in found] == ["collapsed"] and "same score" in found[0].seen


def test_chance_needs_enough_pairs_and_is_judged_after_the_first_third():
    assert at_chance(52.0, 1000) and at_chance(54.9, 10_000) and not at_chance(55.1, 10_000)
    assert at_chance(56.0, 200) and not at_chance(58.0, 200)  # 2 standard errors: 57.07
    assert not at_chance(50.0, 199)  # too few pairs to tell
    monitor = LearningMonitor(("a",), total_steps=300, steps_per_epoch=100, warmup_steps=0)
    monitor.steps(interval(1, 100, 0.5, correct=5.0, counted=10.0))  # 50% over 1,000 pairs, loss below ln 2
    scores = {"test": np.arange(10.0)[:, None]}
    assert monitor.evaluation(99, scores) == []  # before a third of the run: not judged
    found = monitor.evaluation(100, scores, val=(90.0, 400))
    assert [f.kind for f in found] == ["at_chance"] and "training-pair accuracy 50.00%" in found[0].seen
    assert monitor.collapsed is None and monitor.verdict() is found[0]
    monitor.steps(interval(101, 200, 0.4, correct=8.0, counted=10.0))
    assert monitor.evaluation(200, scores, val=(90.0, 400)) == [] and monitor.verdict() is None  # it learned since
    found = LearningMonitor(("a",), 300, 100, 0).evaluation(100, scores, val=(51.0, 5000))
    assert "validation accuracy 51.00%" in found[0].seen  # validation at chance, training too few pairs to tell


def all_pairs(images, strengths):
    i, j = np.triu_indices(len(images), 1)
    return Pairs(images[i], images[j], np.where(strengths[i] > strengths[j], 1.0,
                                                np.where(strengths[i] < strengths[j], 0.0, 0.5)).astype(np.float32))


def test_the_scratch_recipe_follows_the_pair_structure():
    rng = np.random.default_rng(0)
    images = np.arange(60)
    dense = {attr: all_pairs(images, rng.integers(0, 8, 60)) for attr in "abc"}
    structure = PairStructure.of(dense)
    assert structure.images == 60 and structure.coverage == 1.0 and structure.pairs_per_attribute == structure.rows == 1770
    a, b = rng.choice(1000, 300), rng.choice(1000, 300)
    keep = a != b
    sparse = {attr: Pairs(a[keep], b[keep], rng.choice([0.0, 0.5, 1.0], keep.sum()).astype(np.float32))
              for attr in "ab"}
    thin = PairStructure.of(sparse)
    assert thin.coverage < 0.01 and 0.2 < thin.tie_share < 0.5

    dense_config = make_config("pairs_csv", "scratch", pairs=structure)
    sparse_config = make_config("pairs_csv", "scratch", pairs=thin)
    assert dense_config.batch_images > 0 and sparse_config.batch_images == 0  # image groups only where pairs are dense
    assert make_config("pubfig", "scratch").batch_images == dense_config.batch_images  # PubFig: every pair annotated
    assert sparse_config.backbone_lr < dense_config.backbone_lr
    assert make_config("pairs_csv", "scratch", pairs=thin, backbone_lr=0.1).backbone_lr == 0.1  # flags still win

    i, j = np.triu_indices(200, 1)
    chosen = rng.choice(len(i), 3000, replace=False)  # 15% of the pairs of 200 images: PubFig with 500 pairs each
    mid = PairStructure.of({"a": Pairs(i[chosen], j[chosen], np.ones(3000, np.float32))})
    assert [scratch.regime("pairs_csv", p) for p in (structure, mid, thin)] == ["all pairs", "dense pairs", "sparse pairs"]
    mid_config = make_config("pairs_csv", "scratch", pairs=mid)
    assert mid_config.batch_images == dense_config.batch_images and mid_config.spec.dropout < dense_config.spec.dropout


def last_line(text):
    return text.strip().splitlines()[-1]


def test_a_run_forced_to_collapse_stops_and_says_it_did_not_learn(data_dir, tmp_path):
    """A frozen zero ranking layer: every image scores 0 and the loss is ln 2 exactly."""
    workdir = tmp_path / "collapsed"
    result = run_cli("train.py", f"--data_dir={data_dir}", f"--workdir={workdir}", "--epochs=4", "--zero_head",
                     "--backbone_lr=0", "--head_lr=0", "--log_every_steps=25")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "did not learn: collapsed at step 250" in last_line(result.stdout)  # stopped at the first evaluation
    assert "warning: the network collapsed at step 250: every image gets the same score" in result.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert not summary["learned"] and summary["did_not_learn"]["kind"] == "collapsed" and summary["final_step"] == 250
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["learning"] for r in rows if "learning" in r] == ["collapsed"]
    evaluated = run_cli("evaluate.py", f"--workdir={workdir}", f"--data_dir={data_dir}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "DID NOT LEARN" in evaluated.stdout and "collapsed at step 250" in evaluated.stdout


def test_a_learning_rate_far_too_high_is_reported_as_stuck(data_dir, tmp_path):
    workdir = tmp_path / "broken"
    result = run_cli("train.py", f"--data_dir={data_dir}", f"--workdir={workdir}", "--epochs=3", "--optimizer=adamw",
                     "--backbone_lr=1.0", "--head_lr=1.0", "--val_fraction=0.5")  # a quarter of the pairs: short epochs
    assert result.returncode == 3, result.stderr[-2000:]
    assert "did not learn: stuck at step" in last_line(result.stdout)
    assert json.loads((workdir / "summary.json").read_text())["did_not_learn"]["kind"] == "stuck"


def test_a_healthy_run_learned(trained_run):
    workdir, result = trained_run
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["learned"] and summary["did_not_learn"] is None and summary["learning_findings"] == []
    assert "did not learn" not in result.stdout + result.stderr
    assert "recipe demo: vgg16_small at 32 px from random init, dropout" in result.stderr  # said before training
    assert "of training left" in result.stderr  # and an estimate once the first steps are timed


@pytest.mark.parametrize("dataset", ["pubfig", "pairs_csv"])
def test_the_paper_network_from_random_init_is_refused_with_the_ways_out(dataset, tmp_path):
    result = run_cli("train.py", f"--dataset={dataset}", f"--manual_dir={tmp_path}", f"--data_dir={tmp_path}",
                     "--model=vgg16")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = last_line(result.stderr)
    assert line.startswith("error: ") and "--weights=FILE" in line and "--recipe=scratch" in line
    assert "--weights=random" in line and "--recipe=finetune" in line
    on_purpose = run_cli("train.py", f"--dataset={dataset}", f"--manual_dir={tmp_path}", f"--data_dir={tmp_path}",
                         "--model=vgg16", "--weights=random")
    assert on_purpose.returncode == 2 and "error: cannot prepare dataset" in on_purpose.stderr  # no data here
    assert "ImageNet weights" not in on_purpose.stderr
