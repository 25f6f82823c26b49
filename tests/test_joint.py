"""Several attributes on one network: joined pair tables, the masked joint loss, validation splits,
recipes, seeds, and what a multi-attribute checkpoint does in use."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

import relrank
from relrank.cli import main, train_main
from relrank.config import ModelSpec
from relrank.configs import make_config
from relrank.data.batches import pairs_batch
from relrank.data.datasets import load_dataset
from relrank.data.pairs import LabelledPairs, Pairs, hold_out
from relrank.errors import UserError
from relrank.model.losses import ranknet_loss
from relrank.model.network import random_params, scores
from relrank.run.checkpoints import Checkpoints
from relrank.train.step import loss_fn, make_task

from conftest import run_cli


def random_pairs(rng, n, images=30):
    a = rng.integers(0, images, n)
    b = (a + rng.integers(1, images, n)) % images
    return Pairs(a, b, rng.choice([0.0, 0.5, 1.0], n).astype(np.float32))


def oriented(a, b, t):
    """A pair annotation written with its smaller image first."""
    return (a, b, t) if a < b else (b, a, 1.0 - t)


def test_joined_pairs_keep_every_annotation_once():
    rng = np.random.default_rng(0)
    per_attr = [random_pairs(rng, n) for n in (60, 45, 80)]
    per_attr[1] = Pairs.concatenate([per_attr[1], Pairs(per_attr[0].b[:5], per_attr[0].a[:5], per_attr[0].target[:5])])
    per_attr[2] = Pairs.concatenate([per_attr[2], Pairs(per_attr[2].a[:3], per_attr[2].b[:3], per_attr[2].target[:3])])
    joined = LabelledPairs.join(per_attr)
    for k, pairs in enumerate(per_attr):
        expected = sorted(oriented(*map(float, row)) for row in zip(pairs.a, pairs.b, pairs.target))
        rows = np.flatnonzero(joined.labelled[:, k])
        got = sorted(oriented(float(joined.a[i]), float(joined.b[i]), float(joined.target[i, k])) for i in rows)
        assert got == expected  # every annotation, repeats included, in either image order
    assert len(joined) < sum(len(p) for p in per_attr)  # shared pairs became one row
    assert not np.any(joined.target[~joined.labelled])
    single = LabelledPairs.join(per_attr[:1])  # one attribute: its pairs, unchanged
    np.testing.assert_array_equal(single.a, per_attr[0].a)
    np.testing.assert_array_equal(single.target[:, 0], per_attr[0].target)


def test_joint_loss_is_the_per_attribute_losses_averaged_over_annotated_entries():
    config = make_config(attr="brightness,size,pointiness", model="vgg16_small", weight_decay=0.0, recipe="paper",
                         spec=ModelSpec(block_widths=(4, 4, 8, 8, 8), fc_width=16, dropout=0.0))
    task = make_task(config)
    params = random_params(config)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 2, 32, 32, 3), dtype=np.uint8)
    target = rng.choice([0.0, 0.5, 1.0], (8, 3)).astype(np.float32)
    weight = (rng.random((8, 3)) < 0.6).astype(np.float32)
    weight[7] = 0  # padding
    batch = pairs_batch(images, target, weight)
    joint, _ = loss_fn(params, batch, jax.random.key(0), task)

    r = np.asarray(scores(task.network, params, images.reshape(16, 32, 32, 3))).reshape(8, 2, 3)
    per_attr = [float(ranknet_loss(r[:, 0, k], r[:, 1, k], target[:, k], weight[:, k])) for k in range(3)]
    expected = sum(loss * weight[:, k].sum() for k, loss in enumerate(per_attr)) / weight.sum()
    np.testing.assert_allclose(float(joint), expected, rtol=1e-5)
    p = np.clip(1 / (1 + np.exp(-(r[:, 0] - r[:, 1]))), 1e-7, 1 - 1e-7)  # numpy, independently
    bce = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    np.testing.assert_allclose(float(joint), np.sum(weight * bce) / weight.sum(), rtol=1e-5)
    # An unannotated entry's target changes neither the loss nor the gradient.
    changed = dict(batch, target=np.where(weight == 0, 1.0 - target, target))
    grad = jax.jit(jax.grad(lambda p, b: loss_fn(p, b, jax.random.key(0), task)[0]))  # compiled once, for both
    for x, y in zip(jax.tree.leaves(grad(params, batch)), jax.tree.leaves(grad(params, changed))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_validation_split_holds_out_images_with_all_their_pairs():
    rng = np.random.default_rng(2)
    pairs = {"x": random_pairs(rng, 400, images=50), "y": random_pairs(rng, 300, images=50)}
    train, val = hold_out(pairs, 0.2, seed=3)
    train_images = np.unique(np.concatenate([p.images() for p in train.values()]))
    val_images = np.unique(np.concatenate([p.images() for p in val.values()]))
    assert not set(train_images) & set(val_images)
    assert len(val_images) <= 10
    for attr in pairs:  # no pair lost except those between the two sides
        crossing = np.isin(pairs[attr].a, val_images) != np.isin(pairs[attr].b, val_images)
        assert len(train[attr]) + len(val[attr]) + crossing.sum() == len(pairs[attr])
    again, _ = hold_out(pairs, 0.2, seed=3)
    np.testing.assert_array_equal(again["x"].a, train["x"].a)
    other, _ = hold_out(pairs, 0.2, seed=4)
    assert len(other["x"]) != len(train["x"]) or not np.array_equal(other["x"].a, train["x"].a)
    with pytest.raises(UserError, match="leaves attribute 'x' no validation pairs"):
        hold_out({"x": Pairs(np.array([0, 1]), np.array([1, 2]), np.ones(2, np.float32))}, 0.34, seed=0)


def test_recipes_are_data_and_flags_override_them(tmp_path):
    paper = make_config("pubfig", recipe="paper")
    assert (paper.model, paper.backbone_lr, paper.head_lr, paper.epochs, paper.image_size) == ("vgg16", 1e-5, 1e-4, 2, 224)
    assert make_config("pubfig", model="vgg16") == paper  # with --model or --weights the paper's recipe is the default
    assert make_config("pubfig").recipe == "finetune"  # without either: the packaged EfficientNet-Lite0, fine-tuned
    scratch = make_config("pubfig", recipe="scratch", head_lr=0.5, dropout=0.1)
    assert scratch.model == "vgg_cpu" and scratch.optimizer == "adamw" and scratch.flip
    assert scratch.head_lr == 0.5 and scratch.spec.dropout == 0.1 and scratch.spec.norm == "group"
    assert make_config("lfw10", recipe="paper").epochs == 40  # the paper's epochs per dataset stay
    recipe = tmp_path / "mine.py"
    recipe.write_text("def get_config(dataset):\n    return dict(model='vgg16_small', fc_width=64, epochs=7)\n")
    mine = make_config("synthetic", recipe=str(recipe))
    assert mine.spec.fc_width == 64 and mine.epochs == 7 and mine.recipe == str(recipe)
    recipe.write_text("def get_config(dataset):\n    return dict(learning_rate=0.1)\n")
    with pytest.raises(UserError, match="sets unknown field"):
        make_config("synthetic", recipe=str(recipe))


def last_error_line(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("flags,message", [
    (["--config=fast"], "unknown recipe 'fast'; valid recipes: paper, scratch, demo"),
    (["--val_fraction=0.7"], "--val_fraction must be in (0, 0.5]"),
    (["--val_fraction=-0.1"], "--val_fraction must be in (0, 0.5]"),
    (["--attr=brightness,colour"], "dataset 'synthetic' has no attribute 'colour'; valid attributes: brightness"),
    (["--attr=size,size"], "--attr names an attribute twice"),
    (["--block_widths=8,8"], "--block_widths must be 5 integers"),
    (["--seeds=0"], "--seeds must be at least 1"),
])
def test_bad_joint_and_recipe_flags_are_one_line_errors(data_dir, tmp_path, capsys, flags, message):
    assert train_main([f"--data_dir={data_dir}", f"--workdir={tmp_path / 'run'}", *flags]) == 2
    assert message in last_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_seeds_train_one_joint_network_each_and_evaluate_reports_mean_and_std(joint_runs):
    root, result = joint_runs
    summaries = [json.load(open(os.path.join(root, f"seed_{s}", "summary.json"))) for s in (0, 1)]
    for summary in summaries:
        assert set(summary["test_accuracy_per_attr"]) == {"brightness", "size", "pointiness"}
        assert summary["test_accuracy_per_attr"]["brightness"] > 80 and "val_accuracy" in summary
    assert "mean test accuracy" in result.stdout
    evaluated = run_cli("evaluate.py", f"--workdir={root}", "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    groups = {g["attr"]: g for g in json.loads(evaluated.stdout)["attributes"]}
    for attr, g in groups.items():
        values = [s["test_accuracy_per_attr"][attr] for s in summaries]
        assert g["seeds"] == [0, 1]
        np.testing.assert_allclose([g["mean"], g["std"]], [np.mean(values), np.std(values)], atol=1e-9)
    table = run_cli("evaluate.py", f"--workdir={root}").stdout
    line = next(row for row in table.splitlines() if row.startswith("synthetic") and " size " in row)
    assert f"{groups['size']['mean']:.2f}% +- {groups['size']['std']:.2f}" in line
    assert "mean" in table and "(3 attributes)" in table


def test_validation_accuracy_picks_the_best_checkpoint(joint_runs):
    root, _ = joint_runs
    run = os.path.join(root, "seed_0")
    with open(os.path.join(run, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if "val_accuracy" in r]
    assert len(evals) == 2 and all("test_accuracy" in r for r in evals)
    best = max(evals, key=lambda r: r["val_accuracy"])["step"]
    assert Checkpoints(run, read_only=True).best_step() == best
    val = json.loads(run_cli("evaluate.py", f"--workdir={run}", "--split=val", "--checkpoint=best", "--json").stdout)
    by_attr = {r["attr"]: r["accuracy"] for r in val["results"]}
    logged = next(r for r in evals if r["step"] == best)
    assert by_attr == logged["val_accuracy_per_attr"]


def test_a_multi_attribute_checkpoint_scores_each_attribute(joint_runs, data_dir, tmp_path, capsys):
    root, _ = joint_runs
    run = os.path.join(root, "seed_0")
    ranker = relrank.load(run)
    assert ranker.attrs == ("brightness", "size", "pointiness")
    data = load_dataset("synthetic", data_dir=data_dir)
    images = data.load_images(np.arange(1000, 1040), 32)
    everything = ranker.score_all(images)
    assert everything.shape == (40, 3)
    np.testing.assert_array_equal(ranker.score(images, "size"), everything[:, 1])
    # Each output, scored through the public API, orders its attribute's test pairs as the run logged.
    logged = json.load(open(os.path.join(run, "summary.json")))["test_accuracy_per_attr"]
    for attr, pairs in data.pairs_of("test", ranker.attrs).items():
        ids, rows = np.unique(np.concatenate([pairs.a, pairs.b]), return_inverse=True)
        r = ranker.score(data.load_images(ids, 32), attr)
        ra, rb = r[rows[: len(pairs)]], r[rows[len(pairs):]]
        decided = pairs.target != 0.5
        correct = np.where(pairs.target == 1.0, ra > rb, ra < rb)[decided]
        assert abs(100 * correct.mean() - logged[attr]) < 0.1, attr
    with pytest.raises(UserError, match="scores 3 attributes"):
        ranker.score(images)
    with pytest.raises(UserError, match="not trained on attribute 'colour'; it ranks: brightness, size, pointiness"):
        ranker.score(images, "colour")

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(images[i]).save(folder / f"{i}.png")
    out = tmp_path / "ranking.csv"
    assert main(["score", f"--workdir={run}", str(folder), f"--out={out}"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "image,attribute,score,rank" and len(lines) == 1 + 4 * 3
    assert main(["score", f"--workdir={run}", str(folder), f"--out={out}", "--attr=size"]) == 0
    assert out.read_text().splitlines()[0] == "image,score,rank"
    assert main(["score", f"--workdir={run}", str(folder), f"--out={out}", "--attr=colour"]) == 2
    assert "not trained on attribute 'colour'" in last_error_line(capsys)
    saliency = ["saliency", f"--workdir={run}", str(folder / "0.png"), str(folder / "1.png"), f"--out={tmp_path / 's.png'}"]
    assert main(saliency) == 2
    assert "choose one" in last_error_line(capsys)
    assert main([*saliency, "--attr=pointiness"]) == 0
    assert "shows more pointiness" in capsys.readouterr().out


def test_image_group_batches_train_and_resume_exactly(data_dir, tmp_path):
    """--batch_images: a run stopped and resumed ends with the parameters of an uninterrupted one."""
    from relrank.train.loop import train

    config = make_config(data_dir=data_dir, attr="brightness,size", batch_images=64, epochs=2, flip=True,
                         checkpoint_every_steps=1000, log_every_steps=1)
    whole = train(config, str(tmp_path / "whole"))
    assert whole["steps_per_epoch"] == -(-8000 // (64 * 63 // 2)) and whole["final_step"] == 2 * whole["steps_per_epoch"]
    train(config, str(tmp_path / "split"), stop_after_steps=3)
    resumed = train(config, str(tmp_path / "split"))
    assert resumed["resumed_from_step"] == 3
    a, b = relrank.load(str(tmp_path / "whole")), relrank.load(str(tmp_path / "split"))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with open(tmp_path / "whole" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f if '"images_per_s"' in line]
    assert rows[0]["images_per_s"] > 0 and len(rows) == whole["final_step"]
