import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session", autouse=True)
def feature_cache(tmp_path_factory):
    """Runs on cached features (a frozen backbone) cache them here, not in the user's ~/.cache."""
    os.environ["RELRANK_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))


def run_cli(script, *args, env=None, cwd=None, timeout=900):
    """Run train.py / evaluate.py as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO, env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One TFDS data dir for the whole session, with the synthetic dataset prepared once."""
    path = str(tmp_path_factory.mktemp("tfds"))
    from relrank.data.datasets import load_dataset

    load_dataset("synthetic", data_dir=path)
    return path


@pytest.fixture(scope="session")
def trained_run(data_dir, tmp_path_factory):
    """A 2-epoch synthetic run made through the command line (shared by the CLI/checkpoint tests)."""
    workdir = str(tmp_path_factory.mktemp("run") / "brightness")
    result = run_cli(
        "train.py", f"--data_dir={data_dir}", f"--workdir={workdir}", "--epochs=2",
        "--checkpoint_every_steps=100", "--keep_checkpoints=2", "--log_every_steps=25",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


@pytest.fixture(scope="session")
def joint_runs(data_dir, tmp_path_factory):
    """All synthetic attributes on one network, two seeds, with a validation split."""
    root = str(tmp_path_factory.mktemp("joint"))
    result = run_cli("train.py", f"--data_dir={data_dir}", f"--workdir={root}", "--attr=all", "--seeds=2",
                     "--epochs=2", "--batch_pairs=64", "--val_fraction=0.4", "--log_every_steps=20")
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def ported_module(build, backbone: dict):
    """The NNX module that `build()` makes, built abstractly (its random init would compile for seconds), with
    the ported `backbone` parameters and zeros for the rest (the ranking layer)."""
    import jax
    import numpy as np
    from flax import nnx

    module = nnx.eval_shape(build)
    state = nnx.state(module, nnx.Param)
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), nnx.to_pure_dict(state))
    params.update(backbone)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(module, state)
    return module


def jit_features(module, images):
    """module.features(images), compiled once (op-by-op it compiles every layer)."""
    from flax import nnx

    return nnx.jit(lambda m, x: m.features(x))(module, images)


def randomise_batchnorm(model):
    """Every BatchNorm2d of a PyTorch `model` with statistics and affine parameters away from their defaults,
    in eval mode (the frozen BatchNorm a port must reproduce)."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()
