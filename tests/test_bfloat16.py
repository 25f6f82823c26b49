"""--compute_dtype=bfloat16: float32 parameters and optimizer state, a loss near float32's, and it still learns."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from conftest import run_cli
from relrank.configs import make_config
from relrank.data.batches import pairs_batch
from relrank.model.network import random_params
from relrank.train.step import init_state, loss_fn, make_task, train_step

LOSS_TOLERANCE = 0.02  # relative: bfloat16 keeps 8 bits of mantissa (about 2-3 significant digits)


def test_bfloat16_loss_is_within_tolerance_of_float32_and_state_stays_float32():
    rng = np.random.default_rng(0)
    batch = pairs_batch(rng.integers(0, 256, (16, 2, 32, 32, 3), dtype=np.uint8),
                        rng.choice([0.0, 1.0], (16, 1)).astype(np.float32), np.ones((16, 1), np.float32))
    f32 = make_config(model="vgg16_small", recipe="paper")
    bf16 = dataclasses.replace(f32, compute_dtype="bfloat16")
    params = random_params(f32)  # the same weights for both
    losses = {}
    for config in (f32, bf16):
        task = make_task(config)
        losses[config.compute_dtype] = float(jax.jit(lambda p, b: loss_fn(p, b, None, task)[0])(params, batch))
    assert abs(losses["bfloat16"] - losses["float32"]) <= LOSS_TOLERANCE * losses["float32"], losses
    assert losses["bfloat16"] != losses["float32"]  # the pass really ran in bfloat16

    task = make_task(bf16)
    state, _ = jax.jit(lambda s, b: train_step(s, b, task))(init_state(task, params), batch)
    dtypes = {x.dtype for x in jax.tree_util.tree_leaves((state.params, state.opt_state)) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype("float32")}


def test_bfloat16_training_still_learns_the_synthetic_set(data_dir, tmp_path):
    workdir = str(tmp_path / "bf16")
    result = run_cli("train.py", f"--data_dir={data_dir}", f"--workdir={workdir}", "--compute_dtype=bfloat16",
                     "--epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["test_accuracy"] >= 90.0, summary["test_accuracy"]  # float32: 94.8 (chance: 50)
