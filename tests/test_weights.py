"""Pretrained VGG-16 porting, verified against PyTorch references built with random weights."""

import dataclasses
import functools
import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from safetensors.numpy import save_file

from relrank.configs import make_config
from relrank.errors import UserError
from relrank.model.network import model_graph, param_shapes, random_params
from relrank.model.preprocess import normalize
from relrank.model.weights import CAFFE_MEAN_BGR, load_pretrained, merge_backbone

VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class TorchvisionVGG16(torch.nn.Module):
    """torchvision's VGG-16 module layout and names (features.0 .. features.28, classifier.0/3/6)."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for v in VGG16_LAYOUT:
            if v == "M":
                layers.append(torch.nn.MaxPool2d(2, 2))
            else:
                layers += [torch.nn.Conv2d(channels, v, 3, padding=1), torch.nn.ReLU(inplace=True)]
                channels = v
        self.features = torch.nn.Sequential(*layers)
        self.avgpool = torch.nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = torch.nn.Sequential(
            torch.nn.Linear(25088, 4096), torch.nn.ReLU(True), torch.nn.Dropout(),
            torch.nn.Linear(4096, 4096), torch.nn.ReLU(True), torch.nn.Dropout(), torch.nn.Linear(4096, 1000))
        for m in self.modules():  # well-scaled activations through all 16 layers
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                torch.nn.init.uniform_(m.bias, -0.1, 0.1)

    def fc7_and_logits(self, x):
        h = torch.flatten(self.avgpool(self.features(x)), 1)
        fc7 = self.classifier[:5](h)
        return fc7, self.classifier[5:](fc7)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A random torchvision-layout VGG-16, its files in every supported layout, and test images."""
    torch.manual_seed(0)
    model = TorchvisionVGG16().eval()
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    folder = tmp_path_factory.mktemp("weights")
    files = {"pth": str(folder / "vgg16.pth"), "safetensors": str(folder / "vgg16.safetensors"),
             "timm": str(folder / "timm.safetensors"), "pkl": str(folder / "vgg16.pkl")}
    torch.save(model.state_dict(), files["pth"])
    save_file(state, files["safetensors"])
    timm = {k: v for k, v in state.items() if k.startswith("features.")}
    timm.update({"pre_logits.fc1.weight": state["classifier.0.weight"].reshape(4096, 512, 7, 7),
                 "pre_logits.fc1.bias": state["classifier.0.bias"],
                 "pre_logits.fc2.weight": state["classifier.3.weight"].reshape(4096, 4096, 1, 1),
                 "pre_logits.fc2.bias": state["classifier.3.bias"],
                 "head.fc.weight": state["classifier.6.weight"], "head.fc.bias": state["classifier.6.bias"]})
    save_file(timm, files["timm"])
    # A Caffe/Lasagne network: same weights, first conv reading BGR; dense W stored (in, out).
    values = []
    for i, index in enumerate([0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]):
        w = state[f"features.{index}.weight"]
        values += [np.ascontiguousarray(w[:, ::-1]) if i == 0 else w, state[f"features.{index}.bias"]]
    for index in (0, 3, 6):
        values += [np.ascontiguousarray(state[f"classifier.{index}.weight"].T), state[f"classifier.{index}.bias"]]
    with open(files["pkl"], "wb") as f:
        pickle.dump({"param values": values, "mean value": np.array(CAFFE_MEAN_BGR), "synset words": ["a"] * 1000}, f)
    images = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    return dict(model=model, state=state, values=values, files=files, images=images)


def ours(path, images):
    """fc7 features of our model with the ported weights, on uint8 RGB images, preprocessed as the file says."""
    config = make_config(model="vgg16")
    pretrained = load_pretrained(path)
    params = merge_backbone(param_shapes(config), pretrained, "vgg16")  # checks every shape
    params["head"] = {"kernel": np.zeros((4096, 1), np.float32), "bias": np.zeros(1, np.float32)}  # unused here
    fc7 = vgg16_fc7(pretrained.preprocessing)(params, jnp.asarray(images))
    return np.asarray(fc7, np.float64), pretrained


@functools.lru_cache
def vgg16_fc7(preprocessing):
    """fc7 of VGG-16 as a function of the parameters, compiled once per preprocessing for all the layouts."""
    graphdef = model_graph(make_config(model="vgg16")).graphdef
    return jax.jit(lambda params, x: nnx.merge(graphdef, params).features(normalize(x, preprocessing)))


def assert_close(got, expected):
    scale = np.abs(expected).max()
    assert scale > 0
    relative = np.abs(got - expected).max() / scale
    print(f"max |difference| = {np.abs(got - expected).max():.3g}, {relative:.2e} of the output scale {scale:.3g}")
    assert relative <= 1e-4


def torchvision_input(images):
    x = images.astype(np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_torchvision_port_matches_pytorch(reference, kind):
    with torch.no_grad():
        fc7_ref, logits_ref = reference["model"].fc7_and_logits(torchvision_input(reference["images"]))
    fc7, pretrained = ours(reference["files"][kind], reference["images"])
    assert pretrained.preprocessing.channel_order == "RGB" and pretrained.preprocessing.scale == pytest.approx(1 / 255)
    assert_close(fc7, fc7_ref.numpy())
    w8, b8 = reference["state"]["classifier.6.weight"], reference["state"]["classifier.6.bias"]
    assert_close(fc7 @ w8.T.astype(np.float64) + b8, logits_ref.numpy())  # the full ImageNet logits


def test_timm_port_matches_its_convolutional_head(reference):
    s = {k: torch.from_numpy(v) for k, v in reference["state"].items()}
    with torch.no_grad():
        pool5 = reference["model"].features(torchvision_input(reference["images"]))
        fc6 = F.relu(F.conv2d(pool5, s["classifier.0.weight"].reshape(4096, 512, 7, 7), s["classifier.0.bias"]))
        fc7_ref = F.relu(F.conv2d(fc6, s["classifier.3.weight"].reshape(4096, 4096, 1, 1), s["classifier.3.bias"]))
    fc7, _ = ours(reference["files"]["timm"], reference["images"])
    assert_close(fc7, fc7_ref.flatten(1).numpy())


def test_lasagne_port_matches_caffe_semantics(reference):
    """Reference: Lasagne's forward from the pickle's own arrays, on Caffe-preprocessed BGR input."""
    v = [torch.from_numpy(np.asarray(a, np.float32)) for a in reference["values"]]
    bgr = reference["images"][..., ::-1].astype(np.float32) - np.array(CAFFE_MEAN_BGR, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        i = 0
        for v_ in VGG16_LAYOUT:
            if v_ == "M":
                x = F.max_pool2d(x, 2)
            else:
                x = F.relu(F.conv2d(x, v[2 * i], v[2 * i + 1], padding=1))  # cross-correlation: no filter flip
                i += 1
        x = F.relu(x.flatten(1) @ v[26] + v[27])  # C,H,W flatten, W is (in, out)
        fc7_ref = F.relu(x @ v[28] + v[29])
    fc7, pretrained = ours(reference["files"]["pkl"], reference["images"])
    assert pretrained.preprocessing.channel_order == "BGR" and pretrained.preprocessing.mean == CAFFE_MEAN_BGR
    assert_close(fc7, fc7_ref.numpy())


def test_converter_round_trip(reference, tmp_path):
    """A Caffe pickle converted to .safetensors loads back identical, BGR preprocessing included."""
    out = str(tmp_path / "converted.safetensors")
    result = subprocess.run([sys.executable, "-m", "relrank", "convert", reference["files"]["pkl"], out],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    original, converted = load_pretrained(reference["files"]["pkl"]), load_pretrained(out)
    assert converted.preprocessing == original.preprocessing
    for layer in original.params:
        for part in ("kernel", "bias"):
            np.testing.assert_array_equal(converted.params[layer][part], original.params[layer][part])


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"param values": [Evil()]}))
    with pytest.raises(UserError, match="refusing to load .*evil.pkl.*posix.system|refusing to load .*evil.pkl.*os.system"):
        load_pretrained(str(path))
    assert not marker.exists()


def test_mismatches_name_file_layer_and_shapes(reference, tmp_path):
    small = make_config(model="vgg16_small")
    with pytest.raises(UserError, match=r"vgg16.safetensors: layer conv1_1 bias has shape \(64,\) in the file "
                                        r"but \(8,\) in the model"):
        merge_backbone(random_params(small), load_pretrained(reference["files"]["safetensors"]), "vgg16_small")
    other = tmp_path / "resnet.h5"
    other.write_bytes(b"\0" * 16)
    with pytest.raises(UserError, match=r"unknown kind of weights file \(.safetensors, .pth, .pt, .bin, .pkl or an HF "
                                        r"model folder\); supported files: torchvision"):
        load_pretrained(str(other))
    wrong = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}, str(wrong))
    with pytest.raises(UserError, match="no tensor 'features.0.weight'"):
        load_pretrained(str(wrong))


def test_training_from_weights_keeps_their_preprocessing(data_dir, tmp_path):
    """train.py --weights: the backbone starts from the file, and checkpoints carry the file's preprocessing."""
    import relrank
    from conftest import run_cli
    from relrank.model.weights import BACKBONE_LAYERS, CAFFE_PREPROCESSING

    config = make_config(model="vgg16_small")
    params = random_params(config)
    tensors = {f"{layer}.{kind}": np.asarray(params[layer][kind]) + 0.01 for layer in BACKBONE_LAYERS for kind in ("kernel", "bias")}
    path = str(tmp_path / "small.safetensors")
    import json
    save_file(tensors, path, metadata={"preprocessing": json.dumps(dataclasses.asdict(CAFFE_PREPROCESSING))})
    workdir = str(tmp_path / "run")
    result = run_cli("train.py", f"--data_dir={data_dir}", f"--workdir={workdir}", f"--weights={path}",
                     "--backbone_lr=0", "--stop_after_steps=3")
    assert result.returncode == 0, result.stderr[-2000:]
    ranker = relrank.load(workdir)
    assert ranker.config.preprocessing == CAFFE_PREPROCESSING
    for layer in BACKBONE_LAYERS:
        np.testing.assert_array_equal(np.asarray(ranker.params[layer]["kernel"]), tensors[f"{layer}.kernel"])


def test_the_porter_needs_numpy_only():
    """Converting weights imports neither JAX nor the training code."""
    code = ("import sys, relrank.model.weights; "
            "print(sorted(m for m in ('jax', 'flax', 'optax', 'orbax', 'relrank.train.step', 'relrank.model.network') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
