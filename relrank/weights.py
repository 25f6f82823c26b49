"""Pretrained ImageNet VGG-16 weights from the files users have, with the preprocessing they expect.

Supported files (detected by extension and content):
  torchvision state dict   vgg16-397923af.pth (needs torch) or the same tensors as .safetensors
  timm vgg16.tv_in1k       .safetensors; fc6/fc7 stored as 7x7 and 1x1 convolutions (pre_logits.fc1/fc2)
  Lasagne / Caffe pickle   vgg16.pkl of the original code: {'param values': [...], 'mean value': ...}
  relrank                  .safetensors written by `python -m relrank.weights convert IN OUT`

Layouts: PyTorch and Lasagne convolutions are OIHW (relrank: HWIO); their fc6
flattens pool5 as C,H,W while relrank (NHWC) flattens H,W,C, so fc6 is
permuted, not merely transposed. The ImageNet classifier (fc8) is dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import sys
import time

import numpy as np

from relrank.config import Preprocessing
from relrank.errors import UserError
from relrank.model import conv_layer_names
from relrank.train_step import init_params

TORCHVISION_PREPROCESSING = Preprocessing()  # RGB in [0, 1], ImageNet mean / std
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
CAFFE_PREPROCESSING = Preprocessing(channel_order="BGR", scale=1.0, mean=CAFFE_MEAN_BGR, std=(1.0, 1.0, 1.0))
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
BACKBONE_LAYERS = tuple(conv_layer_names()) + ("fc6", "fc7")
SUPPORTED = (
    "torchvision state dict (.pth, needs torch; or .safetensors), timm vgg16.tv_in1k (.safetensors), "
    "Lasagne/Caffe vgg16.pkl, relrank (.safetensors from `python -m relrank.weights convert`)"
)


@dataclasses.dataclass
class Pretrained:
    """Backbone parameters {layer: {'kernel', 'bias'}} in relrank's layout, and their preprocessing."""

    params: dict
    preprocessing: Preprocessing
    source: str


def _conv(weight: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(weight, np.float32).transpose(2, 3, 1, 0))  # OIHW -> HWIO


def _fc6_from_chw_rows(weight: np.ndarray) -> np.ndarray:
    """torchvision fc6 (4096, C*H*W) -> (H*W*C, 4096)."""
    w = np.asarray(weight, np.float32)
    return np.ascontiguousarray(w.reshape(w.shape[0], 512, 7, 7).transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))


def from_torch_layout(tensors: dict, source: str) -> Pretrained:
    """torchvision (`classifier.*`) or timm (`pre_logits.*`) key layout."""
    params = {}
    for name, index in zip(conv_layer_names(), TORCHVISION_CONV_INDICES):
        params[name] = {"kernel": _conv(_get(tensors, f"features.{index}.weight", source)),
                        "bias": _vector(_get(tensors, f"features.{index}.bias", source))}
    if "pre_logits.fc1.weight" in tensors:  # timm: fc6 as a 7x7 conv, fc7 as a 1x1 conv
        fc6 = _get(tensors, "pre_logits.fc1.weight", source)
        params["fc6"] = {"kernel": np.ascontiguousarray(_conv(fc6).reshape(-1, fc6.shape[0])),
                         "bias": _vector(_get(tensors, "pre_logits.fc1.bias", source))}
        fc7 = _get(tensors, "pre_logits.fc2.weight", source)
        params["fc7"] = {"kernel": np.ascontiguousarray(np.asarray(fc7, np.float32)[:, :, 0, 0].T),
                         "bias": _vector(_get(tensors, "pre_logits.fc2.bias", source))}
    else:
        params["fc6"] = {"kernel": _fc6_from_chw_rows(_get(tensors, "classifier.0.weight", source)),
                         "bias": _vector(_get(tensors, "classifier.0.bias", source))}
        params["fc7"] = {"kernel": np.ascontiguousarray(np.asarray(_get(tensors, "classifier.3.weight", source), np.float32).T),
                         "bias": _vector(_get(tensors, "classifier.3.bias", source))}
    return Pretrained(params, TORCHVISION_PREPROCESSING, source)


def from_lasagne(values: list, mean, source: str) -> Pretrained:
    """Lasagne's 'param values': W, b per conv (OIHW, Caffe's BGR, no filter flip), then fc6, fc7, fc8 W (in, out), b."""
    if len(values) < 2 * len(BACKBONE_LAYERS):
        raise UserError(f"{source}: 'param values' holds {len(values)} arrays, expected at least {2 * len(BACKBONE_LAYERS)}")
    params = {}
    for i, name in enumerate(conv_layer_names()):
        params[name] = {"kernel": _conv(values[2 * i]), "bias": _vector(values[2 * i + 1])}
    fc6, fc7 = 2 * len(conv_layer_names()), 2 * len(conv_layer_names()) + 2
    w6 = np.asarray(values[fc6], np.float32)
    params["fc6"] = {"kernel": np.ascontiguousarray(w6.reshape(512, 7, 7, -1).transpose(1, 2, 0, 3).reshape(-1, w6.shape[-1])),
                     "bias": _vector(values[fc6 + 1])}
    params["fc7"] = {"kernel": np.asarray(values[fc7], np.float32), "bias": _vector(values[fc7 + 1])}
    mean = np.asarray(mean, np.float64).reshape(-1)
    preprocessing = CAFFE_PREPROCESSING
    if mean.size == 3:
        preprocessing = dataclasses.replace(CAFFE_PREPROCESSING, mean=tuple(float(m) for m in mean))
    return Pretrained(params, preprocessing, source)


def _get(tensors: dict, key: str, source: str) -> np.ndarray:
    if key not in tensors:
        raise UserError(f"{source}: no tensor {key!r}; supported files: {SUPPORTED}")
    return np.asarray(tensors[key])


def _vector(x) -> np.ndarray:
    return np.asarray(x, np.float32).reshape(-1)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays and plain containers; anything else (code!) is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the pickle asks for {module}.{name}")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def read_pickle(path: str) -> dict:
    """A Lasagne-style pickle (Python 2 pickles included), loading nothing but arrays and containers."""
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as error:
        raise UserError(f"refusing to load {path}: {error}, which is not a numpy array or plain container") from None


def _read_safetensors(path: str) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, (f.metadata() or {})


def load_pretrained(path: str) -> Pretrained:
    """Read a weights file of any supported kind into relrank's layout."""
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        tensors, metadata = _read_safetensors(path)
        if "conv1_1.kernel" in tensors:
            params = {layer: {"kernel": tensors[f"{layer}.kernel"], "bias": tensors[f"{layer}.bias"]} for layer in BACKBONE_LAYERS}
            prep = json.loads(metadata.get("preprocessing", "{}"))
            preprocessing = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in prep.items()})
            return Pretrained(params, preprocessing, path)
        return from_torch_layout(tensors, path)
    if ext in (".pth", ".pt"):
        try:
            import torch
        except ImportError:
            raise UserError(f"{path} is a PyTorch file: install torch, or convert it once elsewhere with "
                            f"`python -m relrank.weights convert {path} vgg16.safetensors`") from None
        state = torch.load(path, map_location="cpu", weights_only=True)
        return from_torch_layout({k: v.numpy() for k, v in state.items()}, path)
    if ext in (".pkl", ".pickle"):
        data = read_pickle(path)
        if not isinstance(data, dict) or "param values" not in data:
            raise UserError(f"{path}: not a Lasagne VGG-16 pickle (no 'param values'); supported files: {SUPPORTED}")
        return from_lasagne(list(data["param values"]), data.get("mean value", CAFFE_MEAN_BGR), path)
    raise UserError(f"{path}: unknown kind of weights file; supported files: {SUPPORTED}")


def merge_backbone(params: dict, pretrained: Pretrained, model_description: str) -> dict:
    """`params` with its backbone replaced by the pretrained one (the head stays as it is)."""
    merged = dict(params)
    for layer in BACKBONE_LAYERS:
        merged[layer] = {}
        for kind in ("kernel", "bias"):
            expected, got = tuple(params[layer][kind].shape), tuple(pretrained.params[layer][kind].shape)
            if expected != got:
                raise UserError(f"{pretrained.source}: layer {layer} {kind} has shape {got} in the file but "
                                f"{expected} in the model ({model_description})")
            merged[layer][kind] = np.asarray(pretrained.params[layer][kind], np.float32)
    return merged


def initial_params(config):
    """The parameters a run starts from, and its config with the weights' preprocessing.

    Fresh weights, with the backbone replaced by `config.weights` when given.
    """
    params = init_params(config)
    if not config.weights:
        return params, config
    pretrained = load_pretrained(config.weights)
    params = merge_backbone(params, pretrained, f"--model={config.model} --image_size={config.image_size}")
    return params, dataclasses.replace(config, preprocessing=pretrained.preprocessing)


def convert(source: str, target: str) -> None:
    """Write `source` in relrank's layout as .safetensors (no torch needed to read it)."""
    from safetensors.numpy import save_file

    pretrained = load_pretrained(source)
    tensors = {f"{layer}.{kind}": np.ascontiguousarray(arrays[kind])
               for layer, arrays in pretrained.params.items() for kind in ("kernel", "bias")}
    save_file(tensors, target, metadata={"preprocessing": json.dumps(dataclasses.asdict(pretrained.preprocessing)),
                                         "source": os.path.basename(source)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relrank.weights",
                                     description="Convert pretrained VGG-16 weights to relrank's .safetensors layout.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert_parser = commands.add_parser("convert", help="convert IN (any supported kind) to OUT.safetensors")
    convert_parser.add_argument("source", help=f"the weights file: {SUPPORTED}")
    convert_parser.add_argument("target", help="where to write the .safetensors file")
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        convert(args.source, args.target)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.target} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
