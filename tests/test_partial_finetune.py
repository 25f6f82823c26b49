"""--train_blocks (the `partial` recipe): the last blocks of EfficientNet-Lite train on cached activations of the
frozen blocks before them. Cached activations score as the whole network scores images; the frozen blocks stay
the ported weights while the trained ones move; the workdir evaluates as the run did; a second run reuses the
cache; settings it cannot honour are one line."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import relrank
from relrank.cli import train_main
from relrank.configs import make_config
from relrank.model.network import cached_views, model_graph, scores
from relrank.model.weights import starting_params
from relrank.train.optim import param_groups


def _config(**flags):
    return make_config("synthetic", recipe="partial", image_size=64, **flags)


def test_cached_activations_score_as_the_whole_network_and_hold_mirror_images():
    config = _config(train_blocks=5)
    params = starting_params(config)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    views = np.asarray(cached_views(model_graph(config), params, jnp.asarray(images)))
    assert views.shape == (3, 2, 4, 4, 112)  # entering block 12 of 16 (stage 6), at 1/16 of 64 px
    mirrored = np.asarray(cached_views(model_graph(config), params, jnp.asarray(images[:, :, ::-1])))
    np.testing.assert_allclose(views[:, 1], mirrored[:, 0], atol=1e-5 * np.abs(views).max())
    params = {**params, "head": {"kernel": jnp.ones_like(params["head"]["kernel"]), "bias": params["head"]["bias"]}}
    whole = np.asarray(scores(model_graph(config), params, jnp.asarray(images)))
    from_views = np.asarray(scores(model_graph(config, "activations"), params, jnp.asarray(views[:, 0])))
    np.testing.assert_allclose(from_views, whole, atol=1e-5 * np.abs(whole).max())
    assert np.ptp(whole) > 0


def test_the_frozen_blocks_are_their_own_parameter_group():
    params = jax.tree.map(lambda x: 0, starting_params(_config(train_blocks=5)))
    groups = param_groups(params, frozen_blocks=11)
    assert set(jax.tree.leaves(groups["stem"])) == {"frozen"}
    assert {set(jax.tree.leaves(groups["blocks"][i])).pop() for i in range(11)} == {"frozen"}
    assert {set(jax.tree.leaves(groups["blocks"][i])).pop() for i in range(11, 16)} == {"backbone"}
    assert set(jax.tree.leaves(groups["top"])) == {"backbone"} and set(jax.tree.leaves(groups["head"])) == {"head"}
    assert "frozen" not in jax.tree.leaves(param_groups(params))


def test_the_last_blocks_train_on_cached_activations_and_the_workdir_scores_as_the_run(data_dir, tmp_path, capsys):
    from relrank.use.results import evaluate_run

    common = [f"--data_dir={data_dir}", "--dataset=synthetic", "--recipe=partial", "--image_size=64",
              "--train_blocks=2", "--attr=brightness,size", "--epochs=1", "--eval_batch_images=64"]
    workdir = tmp_path / "run"
    assert train_main([*common, f"--workdir={workdir}"]) == 0
    err = capsys.readouterr().err
    assert "blocks 15-16 of 16, the head convolution and ranking layer train on the cached activations of the " \
           "blocks before (and of mirror images)" in err
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["features_computed"] == 1500 and summary["features_cached"] == 0
    assert "after14blocks-flips" in summary["feature_cache"]
    assert summary["test_accuracy"] > 60  # the synthetic shapes' attributes are learnt, not guessed

    start, trained = starting_params(make_config("synthetic", recipe="partial", image_size=64)), \
        relrank.load(str(workdir), progress=False).params
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                           {k: v for k, v in start.items() if k != "head"},
                           {k: v for k, v in trained.items() if k != "head"})
    assert not any(jax.tree.leaves(changed["stem"]))
    assert not any(any(jax.tree.leaves(changed["blocks"][i])) for i in range(14))
    assert all(any(jax.tree.leaves(changed["blocks"][i])) for i in (14, 15)) and any(jax.tree.leaves(changed["top"]))

    rows = {row["attr"]: row["accuracy"] for row in evaluate_run(str(workdir), data_dir=data_dir)}
    assert rows == pytest.approx(summary["test_accuracy_per_attr"], abs=0.05)  # images through the whole network

    assert train_main([*common, "--seed=1", f"--workdir={tmp_path / 'seed1'}"]) == 0
    again = json.loads((tmp_path / "seed1" / "summary.json").read_text())
    assert again["features_computed"] == 0 and again["features_cached"] == 1500


@pytest.mark.parametrize("flags,message", [
    (["--model=vgg16_small"], "--train_blocks works with efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, "
                              "not --model=vgg16_small"),
    (["--weights=efficientnet_lite0", "--train_blocks=17"], "--train_blocks=17 is more than the 16 blocks of "
                                                            "efficientnet_lite0"),
    (["--weights=efficientnet_lite0", "--backbone_lr=0"], "--train_blocks trains blocks at --backbone_lr, which is 0"),
    (["--weights=efficientnet_lite0", "--crop_min_scale=0.8"], "which cannot be cropped or colour-jittered"),
])
def test_settings_it_cannot_honour_are_one_line(data_dir, tmp_path, capsys, flags, message):
    flags = flags if any(f.startswith("--train_blocks") for f in flags) else [*flags, "--train_blocks=2"]
    assert train_main([f"--data_dir={data_dir}", "--dataset=synthetic", f"--workdir={tmp_path / 'run'}",
                       *flags]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_a_frozen_backbone_with_flips_trains_on_cached_features_of_mirror_images_too(data_dir, tmp_path, capsys):
    from relrank.use.results import evaluate_run

    workdir = tmp_path / "linear"
    assert train_main([f"--data_dir={data_dir}", "--dataset=synthetic", "--recipe=linear", "--image_size=64",
                       "--weights=efficientnet_lite0", "--flip", "--attr=brightness", f"--workdir={workdir}"]) == 0
    assert "frozen: the ranking layer trains on cached features" in capsys.readouterr().err
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["feature_cache"].endswith("-flips.npz") and summary["features_computed"] > 0
    with np.load(summary["feature_cache"]) as cache:
        table, key = cache["features"], json.loads(str(cache["key"]))
    assert table.shape[1:] == (2, 1280) and key["views"] == 2
    assert not np.allclose(table[:, 0], table[:, 1])  # the mirror images' features differ
    rows = {row["attr"]: row["accuracy"] for row in evaluate_run(str(workdir), data_dir=data_dir)}
    assert rows["brightness"] == pytest.approx(summary["test_accuracy"], abs=0.05)
