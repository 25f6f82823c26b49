"""train.py / evaluate.py end to end: logs, curves, checkpoints, resume, loading, and errors."""

import argparse
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import relrank
from relrank.checkpoint import Checkpoints
from relrank.cli import evaluate_main, evaluate_parser, train_main, train_parser, use_parser, weights_parser
from relrank.config import DATASETS, make_config
from relrank.configs import RECIPES
from relrank.data import load_dataset
from relrank.errors import UserError
from relrank.runs import evaluate_run
from relrank.trainer import train

from conftest import run_cli


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def documented_flags(parser):
    """(flag, help) of every option of `parser` and of its sub-commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from documented_flags(sub)
        elif action.option_strings and action.dest != "help":
            yield action.option_strings[0], action.help


@pytest.mark.parametrize("command,parser", [
    (["train.py"], train_parser), (["evaluate.py"], evaluate_parser),
    (["relrank/__main__.py", "score"], use_parser), (["relrank/__main__.py", "saliency"], use_parser),
    (["relrank/__main__.py", "embed"], use_parser), (["relrank/weights.py", "convert"], weights_parser),
], ids=["train", "evaluate", "score", "saliency", "embed", "convert"])
def test_help_explains_every_flag(command, parser):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    flags = dict(documented_flags(parser()))
    assert all(flags.values()), [flag for flag, text in flags.items() if not text]
    subcommand = parser()._subparsers._group_actions[0].choices[command[1]] if len(command) > 1 else parser()
    for flag, _ in documented_flags(subcommand):
        assert flag in result.stdout, flag
    if command == ["train.py"]:  # the recipes, and each dataset's recipe and paper epochs
        for name, spec in DATASETS.items():
            line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
            assert f"epochs={spec.epochs}" in line and f"recipe={spec.recipe}" in line
        assert "epochs=40" in result.stdout  # LFW-10
        for name in RECIPES:
            assert any(line.split()[:1] == [name] for line in result.stdout.splitlines()), name
    if command[0] == "relrank/weights.py":
        assert "Lasagne" in result.stdout and "torchvision" in result.stdout


def test_run_writes_logs_curves_and_checkpoints(trained_run):
    workdir, result = trained_run
    rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    train_rows = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "test_accuracy" in r]
    assert {"step", "epoch", "loss", "images_per_s"} <= set(train_rows[0])
    assert [r["epoch"] for r in evals] == [1, 2] and [r["step"] for r in evals] == [250, 500]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert all(r["images_per_s"] > 0 for r in train_rows)
    assert evals[-1]["test_accuracy"] > 85.0  # brightness is learnable in two epochs
    assert f"test accuracy {evals[-1]['test_accuracy']:.2f}%" in result.stdout

    with Image.open(os.path.join(workdir, "curves.png")) as png:
        pixels = np.asarray(png.convert("L"))
    assert pixels.shape == (400, 1000) and pixels.std() > 10  # two panels, 10 x 4 inches at 100 dpi

    checkpoints = Checkpoints(workdir, read_only=True)
    steps = set(checkpoints.all_steps())
    best = 250 if evals[0]["test_accuracy"] > evals[1]["test_accuracy"] else 500
    assert steps == {400, 500} | {best}  # the last 2 (every 100 steps and each epoch) and the best
    assert checkpoints.best_step() == best
    config = checkpoints.restore_config(500)
    assert config.attr == "brightness" and config.preprocessing.channel_order == "RGB"


def test_evaluate_and_load(trained_run):
    workdir, _ = trained_run
    final = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "test_accuracy" in r][-1]
    result = run_cli("evaluate.py", f"--workdir={workdir}", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(result.stdout)["results"]
    assert row["seed"] == 0
    assert row["attr"] == "brightness" and row["step"] == 500 and row["num_pairs"] == 3000
    assert abs(row["accuracy"] - final["test_accuracy"]) < 1e-9
    table = run_cli("evaluate.py", f"--workdir={os.path.dirname(workdir)}")  # a folder of runs
    assert table.returncode == 0 and "brightness" in table.stdout and f"{final['test_accuracy']:.2f}%" in table.stdout

    ranker = relrank.load(workdir)
    data = load_dataset("synthetic", data_dir=ranker.config.data_dir)
    index = np.arange(1200, 1260)
    scores = ranker.score(data.load_images(index, 64))  # any size: resized as in training
    strengths = np.array([data.source[int(i)]["strengths"][0] for i in index])
    assert np.corrcoef(scores, strengths)[0, 1] > 0.8  # the score tracks brightness
    p = ranker.compare(data.load_images(index[:5], 32), data.load_images(index[5:10], 32))
    assert p.shape == (5,) and np.all((p > 0) & (p < 1))


def test_resume_of_a_joint_run_matches_uninterrupted_run(data_dir, tmp_path):
    """Two attributes on one network, with a schedule (AdamW, warmup, cosine decay) and augmentation,
    which both continue where they stopped; half the images held out for validation keep the run short."""
    config = make_config(epochs=1, data_dir=data_dir, attr="size,pointiness", batch_pairs=32, val_fraction=0.5,
                         checkpoint_every_steps=1000, optimizer="adamw", schedule="cosine", warmup_fraction=0.1,
                         crop_min_scale=0.6, flip=True, color_jitter=0.1, load_size=40)
    summary = train(config, str(tmp_path / "whole"))
    # Evaluation never augments: re-scoring the saved run gives the accuracies training reported.
    rows = evaluate_run(str(tmp_path / "whole"))
    assert [r["attr"] for r in rows] == ["size", "pointiness"]
    assert {r["attr"]: r["accuracy"] for r in rows} == summary["test_accuracy_per_attr"]
    assert summary["test_accuracy"] == np.mean([r["accuracy"] for r in rows])
    interrupted = train(config, str(tmp_path / "split"), stop_after_steps=25)
    assert interrupted["final_step"] == 25 and interrupted["test_accuracy"] is None
    resumed = train(config, str(tmp_path / "split"))
    assert resumed["resumed_from_step"] == 25 and resumed["final_step"] == summary["final_step"] > 50
    whole, split = relrank.load(str(tmp_path / "whole")), relrank.load(str(tmp_path / "split"))
    for layer in whole.params:
        for kind in ("kernel", "bias"):
            np.testing.assert_array_equal(np.asarray(whole.params[layer][kind]), np.asarray(split.params[layer][kind]))


def one_line_error(result, *expected):
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for text in expected:
        assert text in last, last
    return last


def test_bad_input_gives_one_line_errors(data_dir, trained_run, tmp_path, capsys):
    one_line_error(run_cli("train.py", "--dataset=imagenet"), "unknown dataset 'imagenet'", "synthetic")  # as a user runs it

    def in_process(main, *args):  # the same entry points, without starting Python each time
        status = main(list(args))
        return subprocess.CompletedProcess(args, status, "", capsys.readouterr().err)

    one_line_error(in_process(train_main, f"--data_dir={data_dir}", "--attr=colour"),
                   "no attribute 'colour'", "brightness, size, pointiness")
    one_line_error(in_process(train_main, "--image_size=50"), "multiple of 32")
    one_line_error(in_process(evaluate_main, f"--workdir={tmp_path / 'missing'}"), "does not exist")
    os.makedirs(tmp_path / "empty")
    one_line_error(in_process(evaluate_main, f"--workdir={tmp_path / 'empty'}"), "holds no checkpoint")

    workdir = str(tmp_path / "copy")
    shutil.copytree(trained_run[0], workdir)
    one_line_error(in_process(train_main, f"--data_dir={data_dir}", f"--workdir={workdir}", "--image_size=64"),
                   "holds a run with other settings", "image_size 32 -> 64")


def test_checkpoint_with_wrong_shapes_is_refused(trained_run, tmp_path):
    workdir = str(tmp_path / "copy")
    shutil.copytree(trained_run[0], workdir)
    config_files = [os.path.join(root, f) for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "500", "config"))
                    for f in files if f == "metadata"]
    assert config_files
    for path in config_files:
        with open(path) as f:
            saved = json.load(f)
        saved["spec"]["fc_width"] = 128
        with open(path, "w") as f:
            json.dump(saved, f)
    with pytest.raises(UserError, match="does not fit the model"):
        relrank.load(workdir)


def test_non_finite_loss_stops_and_names_the_step(data_dir, tmp_path):
    workdir = str(tmp_path / "nan")
    result = run_cli("train.py", f"--data_dir={data_dir}", f"--workdir={workdir}", "--backbone_lr=1e38",
                     "--head_lr=1e38", "--checkpoint_every_steps=1", "--log_every_steps=1", "--epochs=1")
    last = one_line_error(result, "at step", "Last good checkpoint")
    bad_step = int(last.split("at step ")[1].split(";")[0])
    steps = Checkpoints(workdir, read_only=True).all_steps()
    assert all(s < bad_step for s in steps)
