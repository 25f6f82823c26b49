"""The VGG-16 topology, layer names, initialisation and dropout, checked against a numpy forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from relrank.config import ModelSpec
from relrank.config import conv_layer_names
from relrank.configs import make_config
from relrank.model.network import param_shapes, random_params
from relrank.model.vgg import VGG


def test_full_vgg16_shapes_and_names():
    params = param_shapes(make_config(model="vgg16"))
    assert list(params) == conv_layer_names() + ["fc6", "fc7", "head"]
    assert conv_layer_names() == [
        "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
        "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3",
    ]
    assert params["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
    assert params["conv5_3"]["kernel"].shape == (3, 3, 512, 512)
    assert params["fc6"]["kernel"].shape == (7 * 7 * 512, 4096)
    assert params["fc7"]["kernel"].shape == (4096, 4096)
    assert params["head"]["kernel"].shape == (4096, 1)
    count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    # torchvision's VGG-16 has 138,357,544 parameters; minus fc8 (4096*1000+1000), plus the head (4096+1).
    assert count == 138_357_544 - 4_097_000 + 4_097


def test_head_initialisation():
    params = random_params(make_config(model="vgg16_small", seed=3))
    kernel, bias = np.asarray(params["head"]["kernel"]), np.asarray(params["head"]["bias"])
    limit = np.sqrt(6.0 / (256 + 1))  # Glorot-uniform bound
    assert np.all(bias == 0)
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit


def _numpy_forward(params, x, depths=(2, 2, 3, 3, 3), groups=0):
    """An independent VGG-style forward pass in numpy: conv 3x3 SAME (+ GroupNorm) + ReLU, 2x2 max-pools,
    fc6, fc7, head."""
    def conv(x, w, b):
        n, h, wd, _ = x.shape
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros((n, h, wd, w.shape[-1]))
        for dy in range(3):
            for dx in range(3):
                out += padded[:, dy:dy + h, dx:dx + wd, :] @ w[dy, dx]
        return out + b

    def group_norm(x, scale, bias, eps=1e-6):
        n, h, w, c = x.shape
        g = x.reshape(n, h, w, groups, c // groups)
        g = (g - g.mean(axis=(1, 2, 4), keepdims=True)) / np.sqrt(g.var(axis=(1, 2, 4), keepdims=True) + eps)
        return g.reshape(n, h, w, c) * scale + bias

    def pool(x):
        n, h, w, c = x.shape
        return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    p = jax.tree_util.tree_map(np.asarray, params)
    for block, layers in enumerate(depths, start=1):
        for i in range(1, layers + 1):
            x = conv(x, p[f"conv{block}_{i}"]["kernel"], p[f"conv{block}_{i}"]["bias"])
            if groups:
                x = group_norm(x, p[f"norm{block}_{i}"]["scale"], p[f"norm{block}_{i}"]["bias"])
            x = np.maximum(x, 0)
        x = pool(x)
    x = x.reshape(len(x), -1)
    x = np.maximum(x @ p["fc6"]["kernel"] + p["fc6"]["bias"], 0)
    x = np.maximum(x @ p["fc7"]["kernel"] + p["fc7"]["bias"], 0)
    return x @ p["head"]["kernel"] + p["head"]["bias"]


def test_forward_matches_numpy_reference():
    config = make_config(model="vgg16_small", image_size=64)
    model = VGG(config.spec, 64, rngs=nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    x = np.random.default_rng(0).normal(size=(3, 64, 64, 3)).astype(np.float32)
    expected = _numpy_forward(params, x.astype(np.float64))
    got = np.asarray(model(jnp.asarray(x)))
    assert got.shape == (3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_cpu_model_with_group_norm_and_two_outputs_matches_numpy():
    config = make_config(model="vgg_cpu", block_widths=(8, 16, 16, 32, 32))
    model = VGG(config.spec, 64, rngs=nnx.Rngs(0), outputs=2)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert [name for name in params if name.startswith("conv")] == [
        "conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"]
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(lambda v: v + 0.1 * rng.normal(size=v.shape).astype(np.float32), params)
    nnx.update(model, params)  # norm scales and biases away from 1 and 0, so they are exercised
    x = rng.normal(size=(3, 64, 64, 3)).astype(np.float32)
    expected = _numpy_forward(params, x.astype(np.float64), depths=(1, 1, 2, 2, 2), groups=8)
    got = np.asarray(model(jnp.asarray(x)))
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_dropout_only_with_a_key():
    model = VGG(ModelSpec(block_widths=(4, 4, 8, 8, 8), fc_width=32), 32, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32, 32, 3)), jnp.float32)
    assert model.features(x).shape == (4, 32)
    np.testing.assert_array_equal(model(x), model(x))
    a = model.features(x, dropout_key=jax.random.key(0))
    b = model.features(x, dropout_key=jax.random.key(1))
    assert not np.allclose(a, b)
    assert float(np.mean(np.asarray(a) == 0)) > float(np.mean(np.asarray(model.features(x)) == 0))
    # With dropout rate 0 the key changes nothing: randomness enters only through dropout.
    no_dropout = VGG(ModelSpec(block_widths=(4, 4, 8, 8, 8), fc_width=32, dropout=0.0), 32, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(no_dropout.features(x, dropout_key=jax.random.key(0)), no_dropout.features(x), rtol=1e-6)


def test_a_zero_head_starts_every_score_equal():
    config = make_config(model="vgg16_small", attr="brightness,size", zero_head=True)
    params = random_params(config)
    assert params["head"]["kernel"].shape == (256, 2) and not np.any(np.asarray(params["head"]["kernel"]))
    assert np.any(np.asarray(params["fc7"]["kernel"]))  # the rest is initialised as usual
