"""The package's layout: an import graph without circles, each sub-package importing only those before it,
one declaration per setting (the flags, --help and --print_config come from it), and checkpoints written
before the layout change still loading and scoring as they did."""

import ast
import dataclasses
import json
import logging
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import relrank
from relrank.cli import flags
from relrank.cli import train as train_command
from relrank.config import Config, ModelSpec
from relrank.configs import resolve

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "relrank"
# Each may import from itself and those before it, never from those after (README: How the code is organised).
LAYERS = ["errors", "config", "parallel", "data", "model", "configs", "evaluation", "run", "train", "use", "annotate",
          "cli", "__main__"]


def import_graph() -> dict[str, set[str]]:
    """module -> the relrank modules it imports, at the top or inside functions; `from P import m` of a
    submodule m counts as importing P.m, not P."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "relrank":
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
                graph[name] |= subs if len(subs) == len(node.names) else {node.module, *subs}
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name.split(".")[0] == "relrank"}
        graph[name] = {target for target in graph[name] if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_import_graph_has_no_circle_and_no_import_goes_up():
    graph = import_graph()
    assert {"relrank.cli.train", "relrank.train.loop", "relrank.evaluation.evaluator"} <= set(graph)
    assert cycles(graph) == []
    layer = {name: LAYERS.index(name.split(".")[1]) for name in graph if name != "relrank"}
    upward = [f"{a} -> {b}" for a in layer for b in graph[a] if b in layer and layer[b] > layer[a]]
    assert upward == []
    assert all(len(name.split(".")) <= 3 for name in graph)  # relrank.<package>.<module> at most
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top_level == ["__init__.py", "__main__.py", "config.py", "errors.py"]


def test_the_checker_finds_a_circle_and_an_upward_import():
    """The two checks above fail on a graph that has what they look for."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_config_field_has_one_declaration_that_the_flags_come_from():
    """Each flag's help, choices and default come from the field's declaration: no field lacks help, and
    the parser's choices are the declared ones."""
    parser = train_command.parser()
    actions = {a.dest: a for a in parser._actions}
    for owner in (Config, ModelSpec, train_command.TrainOptions):
        for field in dataclasses.fields(owner):
            if not field.metadata.get("flag"):
                assert field.name in ("attr", "data_identity", "spec", "preprocessing", "architecture"), field.name
                continue
            assert field.metadata["help"], field.name
            action = actions[field.name]
            assert action.default is None  # unset: the recipe's or the preset's value applies
            assert tuple(action.choices or ()) == field.metadata["choices"], field.name
            assert field.metadata["help"].replace("%", "%%") in action.help, field.name


def test_help_shows_the_values_the_dataset_and_recipe_resolve_to():
    """`--schedule`'s default is what a plain run uses (the demo recipe's cosine), not Config's constant; with
    --dataset=pubfig --recipe=scratch the help shows that recipe's values."""
    demo = train_command.parser(argv=[]).format_help()
    assert "(default: cosine, from recipe demo)" in " ".join(demo.split())
    assert "(default: 0.05, from recipe demo)" in " ".join(demo.split())
    scratch = " ".join(train_command.parser(argv=["--dataset=pubfig", "--recipe=scratch"]).format_help().split())
    assert "(default: adamw, from recipe scratch)" in scratch and "(default: 64, from recipe scratch)" in scratch
    assert "(default: pubfig, as given)" in scratch and "(default: 76, from recipe scratch)" in scratch
    lfw = " ".join(train_command.parser(argv=["--dataset=lfw10"]).format_help().split())
    assert "(default: 40, from dataset lfw10)" in lfw and "(default: finetune, from dataset lfw10)" in lfw


def test_print_config_shows_every_field_with_its_source_and_touches_no_data(tmp_path, capsys):
    from relrank.cli import train_main

    data_dir = tmp_path / "no_data_here"
    assert train_main(["--print_config", "--dataset=pubfig", "--recipe=paper", "--epochs=3", "--model=vgg16_small",
                       "--dropout=0.2", f"--data_dir={data_dir}", "--attr=Male"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if "adapts to the training pairs" not in line}
    config = resolve(dict(dataset="pubfig", recipe="paper", epochs=3, model="vgg16_small", dropout=0.2)).config
    assert set(rows) == set(config.flat())  # every field, the spec's and preprocessing's included
    assert rows["epochs"] == ["3", "flag"]
    assert rows["recipe"] == ["paper", "flag"]
    assert rows["batch_pairs"] == ["16", "recipe", "paper"]
    assert rows["image_size"] == ["32", "preset", "vgg16_small"]
    assert rows["spec.dropout"] == ["0.2", "flag"]
    assert rows["spec.fc_width"] == ["256", "preset", "vgg16_small"]
    assert rows["momentum"] == ["0.9", "default"]
    assert rows["attr"] == ["Male", "flag"]
    assert not data_dir.exists()
    scratch = resolve(dict(dataset="pubfig", recipe="scratch"))
    assert scratch.sources["spec.dropout"] == "recipe scratch" and scratch.sources["epochs"] == "recipe scratch"


def test_output_cut_short_by_its_reader_is_not_a_traceback():
    """`train.py --print_config | head -1`: when the reader has gone, the command stops quietly (status 141)."""
    process = subprocess.Popen([sys.executable, str(REPO / "train.py"), "--print_config"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # before the command writes anything (it starts in ~0.1 s)
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == ""


def test_a_run_saved_before_the_layout_change_loads_and_scores_as_it_did(tmp_path):
    """A joint run written by main before the sub-packages (tests/fixtures/run_before_layout: its checkpoint
    and the scores it gave then) loads with today's code and gives the same scores."""
    fixture = REPO / "tests" / "fixtures" / "run_before_layout"
    shutil.copytree(fixture / "run", tmp_path / "run")
    expected = json.loads((fixture / "expected_scores.json").read_text())
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    ranker = relrank.load(str(tmp_path / "run"), progress=False)
    assert ranker.attrs == tuple(expected["scores"]) and ranker.step == 3
    for attr, scores in expected["scores"].items():
        np.testing.assert_array_equal(ranker.score(images, attr), np.asarray(scores, np.float32))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "split" in saved and ranker.config.zappos_split == saved["split"]  # a renamed field, read by its old name


def test_loading_is_quiet(tmp_path, capfd, caplog):
    """relrank.load(W, progress=False).score prints nothing: no Orbax warnings, no progress bars."""
    shutil.copytree(REPO / "tests" / "fixtures" / "run_before_layout" / "run", tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="absl"):
        ranker = relrank.load(str(tmp_path / "run"), progress=False, batch_size=2)
        ranker.score(np.zeros((5, 32, 32, 3), np.uint8), "size")  # several batches: a bar, unless progress=False
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("value,shown", [(None, ""), ("", ""), (True, "on"), ((1, 2), "1,2"), (1e-5, "1e-05")])
def test_values_show_as_flags_take_them(value, shown):
    assert flags._show(value) == shown
    if isinstance(value, tuple):
        assert flags.ints(shown) == value
