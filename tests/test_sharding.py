"""Data parallelism: two devices train exactly like one (run in a subprocess with 2 fake CPU devices)."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import dataclasses, json
    import jax, numpy as np
    from relrank.parallel import sharding
    from relrank.config import ModelSpec
    from relrank.configs import make_config
    from relrank.data.batches import pairs_batch
    from relrank.model.network import random_params
    from relrank.train.step import init_state, jit_train_step, make_task

    assert jax.device_count() == 2, jax.devices()
    config = dataclasses.replace(make_config(model="vgg16_small", image_size=32, batch_pairs=8, recipe="paper"),
                                 spec=ModelSpec(block_widths=(4, 4, 8, 8, 8), fc_width=32))
    task = make_task(config)
    params = jax.tree_util.tree_map(np.asarray, random_params(config))  # host copy: the step donates its input
    rng = np.random.default_rng(0)
    batches = [pairs_batch(rng.integers(0, 256, (8, 2, 32, 32, 3), dtype=np.uint8),
                           rng.choice([0.0, 0.5, 1.0], (8, 1)).astype(np.float32), np.ones((8, 1), np.float32))
               for _ in range(3)]

    def run(devices):
        mesh = sharding.make_mesh(devices)
        state = sharding.put_replicated(init_state(task, params), mesh)
        step = jit_train_step(task, mesh)
        losses, shard_shapes = [], None
        for batch in batches:
            placed = sharding.put_batch(batch, mesh)
            shard_shapes = [s.data.shape for s in placed["images"].addressable_shards]
            state, metrics = step(state, placed)
            losses.append(float(metrics["loss"]))
        return losses, jax.tree_util.tree_map(np.asarray, state.params), shard_shapes

    loss1, params1, shards1 = run(jax.devices()[:1])
    loss2, params2, shards2 = run(jax.devices())
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(params1), jax.tree_util.tree_leaves(params2)))
    scale = max(float(np.max(np.abs(a))) for a in jax.tree_util.tree_leaves(params1))
    print(json.dumps(dict(loss1=loss1, loss2=loss2, param_diff=diff, scale=scale,
                          shards1=shards1, shards2=shards2)))
""")


def test_two_devices_match_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # One device holds all 16 images of the 8 pairs; two devices hold 8 each (the pair index is replicated).
    assert out["shards1"] == [[16, 32, 32, 3]]
    assert out["shards2"] == [[8, 32, 32, 3], [8, 32, 32, 3]]
    assert len(out["loss1"]) == 3
    for a, b in zip(out["loss1"], out["loss2"]):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a))
    assert out["param_diff"] <= 1e-5 * max(1.0, out["scale"])
    assert out["loss1"][0] != out["loss1"][2]  # training actually moved
