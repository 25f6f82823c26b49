"""RankNet loss, L2 penalty and one full RMSProp update, each against hand-written numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from relrank.config import ModelSpec
from relrank.configs import make_config
from relrank.data.batches import pairs_batch
from relrank.model.losses import l2_penalty, ranknet_loss
from relrank.model.network import random_params, scores
from relrank.train.optim import learning_rate, make_optimizer, param_groups
from relrank.train.step import init_state, make_task
from relrank.train.step import train_step as eager_train_step

train_step = jax.jit(eager_train_step, static_argnums=2)


def numpy_bce(ra, rb, t, w):
    p = np.clip(1 / (1 + np.exp(-(ra - rb))), 1e-7, 1 - 1e-7)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    return np.sum(w * bce) / np.sum(w)


def test_ranknet_loss_matches_numpy():
    rng = np.random.default_rng(0)
    ra, rb = rng.normal(size=64) * 3, rng.normal(size=64) * 3
    t = rng.choice([0.0, 0.5, 1.0], size=64)
    w = np.ones(64)
    w[50:] = 0  # padding
    got = ranknet_loss(jnp.asarray(ra), jnp.asarray(rb), jnp.asarray(t), jnp.asarray(w))
    np.testing.assert_allclose(float(got), numpy_bce(ra, rb, t, w), rtol=1e-5)


def test_clipping_bounds_the_loss():
    # A confidently wrong pair costs -log(1e-7), not infinity (the upper clip 1 - 1e-7 rounds
    # to 1 - 2**-23 in float32, as it did in the original Theano code).
    loss = ranknet_loss(jnp.array([-100.0]), jnp.array([100.0]), jnp.array([1.0]), jnp.array([1.0]))
    np.testing.assert_allclose(float(loss), -np.log(1e-7), rtol=1e-4)
    other_side = ranknet_loss(jnp.array([100.0]), jnp.array([-100.0]), jnp.array([0.0]), jnp.array([1.0]))
    np.testing.assert_allclose(float(other_side), -np.log(1 - np.float32(1 - 1e-7)), rtol=1e-4)
    # A tie target is minimised by equal scores, at log(2).
    tie = ranknet_loss(jnp.array([1.0]), jnp.array([1.0]), jnp.array([0.5]), jnp.array([1.0]))
    np.testing.assert_allclose(float(tie), np.log(2), rtol=1e-6)


def test_l2_counts_kernels_not_biases():
    params = {"conv1_1": {"kernel": jnp.full((2, 2), 3.0), "bias": jnp.full((2,), 100.0)},
              "head": {"kernel": jnp.full((2, 1), 1.0), "bias": jnp.full((1,), 5.0)}}
    assert float(l2_penalty(params)) == 4 * 9 + 2 * 1
    assert param_groups(params) == {"conv1_1": {"kernel": "backbone", "bias": "backbone"},
                                    "head": {"kernel": "head", "bias": "head"}}


def tiny_config(**kw):
    config = make_config(model="vgg16_small", image_size=32, weight_decay=0.01, recipe="paper", **kw)
    import dataclasses
    return dataclasses.replace(config, spec=ModelSpec(block_widths=(4, 4, 8, 8, 8), fc_width=16, dropout=0.0))


def tiny_batch(n=6, seed=0):
    """n pairs of one attribute (the last one padding), as the pair batches of input_pipeline."""
    rng = np.random.default_rng(seed)
    return pairs_batch(rng.integers(0, 256, (n, 2, 32, 32, 3), dtype=np.uint8),
                       rng.choice([0.0, 0.5, 1.0], size=(n, 1)).astype(np.float32),
                       np.r_[np.ones(n - 1), 0.0].astype(np.float32)[:, None])


def numpy_rmsprop(param, grad, lr):
    """Lasagne rmsprop from a zero accumulator: a = 0.1 g^2; w - lr g / sqrt(a + 1e-6)."""
    accumulator = 0.1 * grad**2
    return param - lr * grad / np.sqrt(accumulator + 1e-6)


def test_one_update_of_the_head_by_hand():
    """Frozen backbone: the whole update of the head written out in numpy."""
    config = tiny_config(backbone_lr=0.0, head_lr=0.05)
    task = make_task(config)
    params = random_params(config)
    batch = tiny_batch()
    new_state, metrics = train_step(init_state(task, params), batch, task)

    # fc7 features from the (frozen) network, then everything by hand.
    from flax import nnx
    from relrank.model.preprocess import normalize
    model = nnx.merge(task.network.graphdef, params)
    images = np.asarray(batch["images"]).reshape(-1, 32, 32, 3)
    features = np.asarray(jax.jit(lambda x: model.features(normalize(x, config.preprocessing)))(images), np.float64)
    fa, fb = features[0::2], features[1::2]
    w = np.asarray(params["head"]["kernel"], np.float64)[:, 0]
    b = float(params["head"]["bias"][0])
    t, weight = np.asarray(batch["target"], np.float64)[:, 0], np.asarray(batch["weight"], np.float64)[:, 0]
    ra, rb = fa @ w + b, fb @ w + b
    p = 1 / (1 + np.exp(-(ra - rb)))
    expected_loss = numpy_bce(ra, rb, t, weight) + config.weight_decay * (
        sum(np.sum(np.asarray(v["kernel"], np.float64) ** 2) for v in params.values()))
    np.testing.assert_allclose(float(metrics["loss"]), expected_loss, rtol=1e-5)
    # d/dw of mean BCE(sigmoid(ra - rb)) = sum weight (p - t)(fa - fb) / sum weight, plus 2 wd w.
    grad_w = (weight * (p - t)) @ (fa - fb) / weight.sum() + 2 * config.weight_decay * w
    grad_b = 0.0  # the bias cancels in r_a - r_b and is not decayed
    np.testing.assert_allclose(
        np.asarray(new_state.params["head"]["kernel"])[:, 0], numpy_rmsprop(w, grad_w, 0.05), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(new_state.params["head"]["bias"][0]), numpy_rmsprop(b, grad_b, 0.05), atol=1e-6)
    for layer in params:
        if layer != "head":
            np.testing.assert_array_equal(new_state.params[layer]["kernel"], params[layer]["kernel"])


def test_one_update_of_every_layer():
    """Both groups train with their own learning rate; gradients include 2 * wd * W for kernels only."""
    config = tiny_config(backbone_lr=1e-3, head_lr=1e-2)
    task = make_task(config)
    params = random_params(config)
    batch = tiny_batch(seed=1)
    new_state, _ = train_step(init_state(task, params), batch, task)

    def rank_loss(p):
        r = scores(task.network, p, batch["images"])[:, 0].reshape(-1, 2)
        return ranknet_loss(r[:, 0], r[:, 1], batch["target"][:, 0], batch["weight"][:, 0])

    grads = jax.jit(jax.grad(rank_loss))(params)
    for layer in params:
        lr = 1e-2 if layer == "head" else 1e-3
        for kind in ("kernel", "bias"):
            g = np.asarray(grads[layer][kind], np.float64)
            value = np.asarray(params[layer][kind], np.float64)
            if kind == "kernel":
                g = g + 2 * config.weight_decay * value
            np.testing.assert_allclose(
                np.asarray(new_state.params[layer][kind]), numpy_rmsprop(value, g, lr), rtol=1e-4, atol=2e-6,
                err_msg=f"{layer}/{kind}")
    assert int(new_state.step) == 1


def tiny_params():
    rng = np.random.default_rng(3)
    return {"conv1_1": {"kernel": rng.normal(size=(3, 2)).astype(np.float32), "bias": rng.normal(size=2).astype(np.float32)},
            "head": {"kernel": rng.normal(size=(2, 1)).astype(np.float32), "bias": rng.normal(size=1).astype(np.float32)}}


def run_optimizer(config, steps, total_steps=None):
    """Parameters after `steps` updates with fixed pseudo-random gradients, and those gradients."""
    params = tiny_params()
    grads = [jax.tree_util.tree_map(lambda x, k=k: np.cos(np.arange(x.size) + k).reshape(x.shape).astype(np.float32), params)
             for k in range(steps)]
    tx = make_optimizer(config, total_steps)
    state = tx.init(params)
    p = params
    for g in grads:
        updates, state = tx.update(g, state, p)
        p = jax.tree_util.tree_map(lambda a, u: a + u, p, updates)
    return params, grads, p


def test_adamw_matches_numpy_with_decoupled_decay_on_kernels_only():
    config = make_config(recipe="paper", optimizer="adamw", backbone_lr=1e-3, head_lr=1e-2, weight_decay=0.1)
    params, grads, got = run_optimizer(config, 3)
    for layer, lr in (("conv1_1", 1e-3), ("head", 1e-2)):
        for kind in ("kernel", "bias"):
            p, m, v = params[layer][kind].astype(np.float64), 0.0, 0.0
            for t, g in enumerate(grads, start=1):
                g = g[layer][kind]
                m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                step = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
                p = p - lr * (step + (0.1 * p if kind == "kernel" else 0.0))
            np.testing.assert_allclose(got[layer][kind], p, rtol=1e-5, atol=1e-7)
    # AdamW's decay is in the update, so the loss carries no L2 term.
    from relrank.train.optim import loss_weight_decay
    assert loss_weight_decay(config) == 0.0 and loss_weight_decay(make_config(weight_decay=0.1)) == 0.1


def test_sgd_momentum_matches_numpy():
    config = make_config(recipe="paper", optimizer="sgd", momentum=0.8, backbone_lr=0.05, head_lr=0.5)
    params, grads, got = run_optimizer(config, 3)
    for layer, lr in (("conv1_1", 0.05), ("head", 0.5)):
        for kind in ("kernel", "bias"):
            p, trace = params[layer][kind].astype(np.float64), 0.0
            for g in grads:
                trace = g[layer][kind] + 0.8 * trace
                p = p - lr * trace
            np.testing.assert_allclose(got[layer][kind], p, rtol=1e-5, atol=1e-7)


def test_warmup_then_cosine_or_linear_decay():
    total, peak = 100, 0.3
    for schedule, after in (("cosine", lambda k: peak * 0.5 * (1 + np.cos(np.pi * k / 90))),
                            ("linear", lambda k: peak * (1 - k / 90)), ("constant", lambda k: peak)):
        lr = learning_rate(peak, schedule, total, warmup_fraction=0.1)
        expected = [peak * s / 10 for s in range(10)] + [after(k) for k in range(90)]
        np.testing.assert_allclose([float(lr(s)) for s in range(total)], expected, rtol=1e-5, atol=1e-7)
    # In the optimizer, each update uses the rate of its own step (SGD without momentum: update = -lr * g).
    config = make_config(recipe="paper", optimizer="sgd", momentum=0.0, schedule="linear", backbone_lr=1.0, head_lr=1.0)
    params, grads, got = run_optimizer(config, 3, total_steps=4)
    rates = [1.0, 0.75, 0.5]
    expected = params["head"]["bias"] - sum(r * g["head"]["bias"] for r, g in zip(rates, grads))
    np.testing.assert_allclose(got["head"]["bias"], expected, rtol=1e-6)
