"""train.py / evaluate.py end to end: logs, curves, checkpoints, resume, loading, and errors."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import relrank
from relrank.cli import COMMANDS, convert, embed, evaluate, evaluate_main, export, saliency, score, train_main
from relrank.cli import train as train_command
from relrank.configs import make_config
from relrank.configs.recipes import RECIPES
from relrank.configs.resolve import default_recipe
from relrank.data.datasets import load_dataset
from relrank.data.registry import DATASETS
from relrank.errors import UserError
from relrank.run.checkpoints import Checkpoints
from relrank.train.loop import train
from relrank.use.results import evaluate_run

from conftest import run_cli


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def documented_flags(parser):
    """(flag, help) of every option of `parser`."""
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            yield action.option_strings[0], action.help


@pytest.mark.parametrize("command,module", [
    (["train.py"], train_command), (["evaluate.py"], evaluate),
    (["relrank/__main__.py", "score"], score), (["relrank/__main__.py", "saliency"], saliency),
    (["relrank/__main__.py", "embed"], embed), (["relrank/__main__.py", "convert"], convert),
    (["relrank/__main__.py", "export"], export),
], ids=["train", "evaluate", "score", "saliency", "embed", "convert", "export"])
def test_help_explains_every_flag_and_names_its_command(command, module):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    name = command[0] if len(command) == 1 else f"python -m relrank {command[1]}"
    assert result.stdout.startswith(f"usage: {name} "), result.stdout[:80]
    flags = dict(documented_flags(module.parser()))
    assert all(flags.values()), [flag for flag, text in flags.items() if not text]
    for flag in flags:
        assert flag in result.stdout, flag
    if command == ["train.py"]:  # the recipes, and each dataset's recipe and paper epochs
        for name, spec in DATASETS.items():
            line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
            assert f"epochs={spec.epochs}" in line and f"recipe={default_recipe(name, {})}" in line
        assert "epochs=40" in result.stdout  # LFW-10
        for name in RECIPES:
            assert any(line.split()[:1] == [name] for line in result.stdout.splitlines()), name
    if command[-1] == "convert":
        assert "Lasagne" in result.stdout and "torchvision" in result.stdout


def test_the_relrank_command_names_each_subcommand_in_its_help():
    """`relrank --help` lists the commands; `relrank NAME --help` says `usage: relrank NAME`; an unknown command
    is one line naming the commands."""
    relrank = os.path.join(os.path.dirname(sys.executable), "relrank")
    listing = subprocess.run([relrank, "--help"], capture_output=True, text=True)
    assert listing.returncode == 0 and all(f"  {name} " in listing.stdout for name in COMMANDS), listing.stdout
    for name in COMMANDS:
        result = subprocess.run([relrank, name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.startswith(f"usage: relrank {name} "), result.stdout[:80]
    wrong = subprocess.run([relrank, "trian"], capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        f"error: relrank: unknown command 'trian'; commands: {', '.join(COMMANDS)}"]


def read_events(workdir: str) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars {tag: [(step, value)]} read from the run's event files (TFRecord framing: length,
    its CRC, the Event protobuf, its CRC), with tensorboardX's protobuf classes only."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = {}
    for name in sorted(os.listdir(workdir)):
        if not name.startswith("events.out.tfevents."):
            continue
        data = open(os.path.join(workdir, name), "rb").read()
        offset = 0
        while offset < len(data):
            length = int.from_bytes(data[offset:offset + 8], "little")
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_run_writes_tensorboard_events_that_match_its_metrics(trained_run, joint_runs):
    """`tensorboard --logdir runs/` finds each run: its loss and accuracies, per attribute for a joint run,
    at the steps and with the values of metrics.jsonl."""
    workdir, _ = trained_run
    rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    events = read_events(workdir)
    assert events["train/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in rows if "loss" in r]
    assert events["test/accuracy"] == [(r["step"], pytest.approx(r["test_accuracy"], rel=1e-6))
                                       for r in rows if "test_accuracy" in r]
    joint = os.path.join(joint_runs[0], "seed_0")
    last = [r for r in read_jsonl(os.path.join(joint, "metrics.jsonl")) if "val_accuracy_per_attr" in r][-1]
    events = read_events(joint)
    for attr, value in last["val_accuracy_per_attr"].items():
        assert events[f"val/accuracy/{attr}"][-1] == (last["step"], pytest.approx(value, rel=1e-6))


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
