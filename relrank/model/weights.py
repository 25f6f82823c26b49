"""Pretrained ImageNet VGG-16 weights from the files users have, with the preprocessing they expect.

Supported files (detected by extension and content):
  torchvision state dict   vgg16-397923af.pth (needs torch) or the same tensors as .safetensors
  timm vgg16.tv_in1k       .safetensors; fc6/fc7 stored as 7x7 and 1x1 convolutions (pre_logits.fc1/fc2)
  Lasagne / Caffe pickle   vgg16.pkl of the original code: {'param values': [...], 'mean value': ...}
  relrank                  .safetensors written by `relrank convert IN OUT`

Layouts: PyTorch and Lasagne convolutions are OIHW (relrank: HWIO); their fc6
flattens pool5 as C,H,W while relrank (NHWC) flattens H,W,C, so fc6 is
permuted, not merely transposed. The ImageNet classifier (fc8) is dropped.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import json
import os
import pickle

import numpy as np

from relrank.config import CONV_LAYERS_PER_BLOCK, Preprocessing, conv_layer_names
from relrank.errors import UserError

TORCHVISION_PREPROCESSING = Preprocessing()  # RGB in [0, 1], ImageNet mean / std
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
CAFFE_PREPROCESSING = Preprocessing(channel_order="BGR", scale=1.0, mean=CAFFE_MEAN_BGR, std=(1.0, 1.0, 1.0))
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
BACKBONE_LAYERS = tuple(conv_layer_names()) + ("fc6", "fc7")
SUPPORTED = (
    "torchvision state dict (.pth, needs torch; or .safetensors), timm vgg16.tv_in1k (.safetensors), "
    "Lasagne/Caffe vgg16.pkl, relrank (.safetensors from `relrank convert`)"
)


@dataclasses.dataclass
class Pretrained:
    """Backbone parameters {layer: {'kernel', 'bias'}} in relrank's layout, and their preprocessing."""

    params: dict
    preprocessing: Preprocessing
    source: str


def _vgg16_channels() -> dict[str, tuple[int, int]]:
    """(in, out) channels of each conv layer of ImageNet VGG-16."""
    widths = [w for w, n in zip((64, 128, 256, 512, 512), CONV_LAYERS_PER_BLOCK) for _ in range(n)]
    return dict(zip(conv_layer_names(), zip([3] + widths[:-1], widths)))


VGG16_CHANNELS = _vgg16_channels()
FC = 4096
POOL5 = (7, 7, 512)  # H, W, C of pool5 at 224x224


class _Reader:
    """Looks tensors up in a weights file, checking each one's shape against ImageNet VGG-16's."""

    def __init__(self, tensors, source: str):
        self.tensors, self.source = tensors, source

    def get(self, key, layer: str, shape: tuple[int, ...], label: str = "") -> np.ndarray:
        label = label or repr(key)
        try:
            value = self.tensors[key]
        except (KeyError, IndexError):
            raise UserError(f"{self.source}: no tensor {label} (layer {layer}); supported files: {SUPPORTED}") from None
        value = np.asarray(value)
        if value.shape != tuple(shape):
            raise UserError(f"{self.source}: {label} (layer {layer}) has shape {value.shape}, expected {tuple(shape)} "
                            f"for ImageNet VGG-16")
        return value.astype(np.float32)


def _conv(weight: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))  # OIHW -> HWIO


def _fc6_from_chw_rows(weight: np.ndarray) -> np.ndarray:
    """(4096, C*H*W), pool5 flattened as C, H, W -> relrank's (H*W*C, 4096)."""
    h, w, c = POOL5
    return np.ascontiguousarray(weight.reshape(FC, c, h, w).transpose(2, 3, 1, 0).reshape(-1, FC))


def from_torch_layout(tensors: dict, source: str) -> Pretrained:
    """torchvision (`classifier.*`) or timm (`pre_logits.*`) key layout."""
    read = _Reader(tensors, source)
    params = {}
    for (name, (cin, cout)), index in zip(VGG16_CHANNELS.items(), TORCHVISION_CONV_INDICES):
        params[name] = {"kernel": _conv(read.get(f"features.{index}.weight", name, (cout, cin, 3, 3))),
                        "bias": read.get(f"features.{index}.bias", name, (cout,))}
    h, w, c = POOL5
    if "pre_logits.fc1.weight" in tensors:  # timm: fc6 as a 7x7 conv, fc7 as a 1x1 conv
        fc6 = read.get("pre_logits.fc1.weight", "fc6", (FC, c, h, w))
        fc7 = read.get("pre_logits.fc2.weight", "fc7", (FC, FC, 1, 1))
        params["fc6"] = {"kernel": np.ascontiguousarray(_conv(fc6).reshape(-1, FC)),
                         "bias": read.get("pre_logits.fc1.bias", "fc6", (FC,))}
        params["fc7"] = {"kernel": np.ascontiguousarray(fc7[:, :, 0, 0].T),
                         "bias": read.get("pre_logits.fc2.bias", "fc7", (FC,))}
    else:
        params["fc6"] = {"kernel": _fc6_from_chw_rows(read.get("classifier.0.weight", "fc6", (FC, c * h * w))),
                         "bias": read.get("classifier.0.bias", "fc6", (FC,))}
        params["fc7"] = {"kernel": np.ascontiguousarray(read.get("classifier.3.weight", "fc7", (FC, FC)).T),
                         "bias": read.get("classifier.3.bias", "fc7", (FC,))}
    return Pretrained(params, TORCHVISION_PREPROCESSING, source)


def from_lasagne(values: list, mean, source: str) -> Pretrained:
    """Lasagne's 'param values': W, b per conv (OIHW, Caffe's BGR, no filter flip), then fc6, fc7, fc8 W (in, out), b."""
    if len(values) < 2 * len(BACKBONE_LAYERS):
        raise UserError(f"{source}: 'param values' holds {len(values)} arrays, expected at least {2 * len(BACKBONE_LAYERS)}")
    read = _Reader(values, source)

    def get(i: int, layer: str, shape: tuple[int, ...]) -> np.ndarray:
        return read.get(i, layer, shape, label=f"'param values'[{i}]")

    params = {}
    for i, (name, (cin, cout)) in enumerate(VGG16_CHANNELS.items()):
        params[name] = {"kernel": _conv(get(2 * i, name, (cout, cin, 3, 3))), "bias": get(2 * i + 1, name, (cout,))}
    fc6, fc7 = 2 * len(VGG16_CHANNELS), 2 * len(VGG16_CHANNELS) + 2
    h, w, c = POOL5
    w6 = get(fc6, "fc6", (c * h * w, FC))
    params["fc6"] = {"kernel": np.ascontiguousarray(w6.reshape(c, h, w, FC).transpose(1, 2, 0, 3).reshape(-1, FC)),
                     "bias": get(fc6 + 1, "fc6", (FC,))}
    params["fc7"] = {"kernel": get(fc7, "fc7", (FC, FC)), "bias": get(fc7 + 1, "fc7", (FC,))}
    return Pretrained(params, _caffe_preprocessing(mean, source), source)


def _caffe_preprocessing(mean, source: str = "") -> Preprocessing:
    """Caffe's BGR 0-255 input, minus the file's own mean."""
    mean = np.asarray(mean, np.float64).reshape(-1)
    return _checked(dataclasses.replace(CAFFE_PREPROCESSING, mean=tuple(float(m) for m in mean)), source)


def _checked(prep: Preprocessing, source: str) -> Preprocessing:
    """`prep`, or a one-line error naming what in the file's preprocessing cannot be right."""
    values = {"mean": prep.mean, "std": prep.std}
    for name, value in values.items():
        if len(value) != 3 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in value):
            raise UserError(f"{source}: its preprocessing {name} is {list(value)}; expected 3 numbers, one per channel")
    if min(prep.std) <= 0 or prep.channel_order not in ("RGB", "BGR") or not prep.scale > 0:
        raise UserError(f"{source}: its preprocessing ({prep}) needs std > 0, scale > 0 and channel_order RGB or BGR")
    return prep


def _only_latin1(obj, encoding="utf-8", errors="strict"):
    """`_codecs.encode` as Python 2 pickles of byte strings use it (latin-1), and nothing else."""
    if encoding not in ("latin1", "latin-1") or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"the pickle asks for _codecs.encode with {encoding!r}")
    return codecs.encode(obj, encoding, errors)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays and plain containers, from pickle protocols 0-5; anything else (code!) is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _only_latin1
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
        if "asks for" in str(error):
            raise UserError(f"refusing to load {path}: {error}, which is not a numpy array or plain container") from None
        raise UserError(f"cannot read {path} as a pickle: {error}") from None
    except EOFError:
        raise UserError(f"cannot read {path} as a pickle: the file is empty or truncated") from None
    except Exception as error:  # a damaged pickle fails in many ways (ValueError, TypeError, MemoryError, ...)
        raise UserError(f"cannot read {path} as a pickle: {_why(error)}") from None


def _why(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _read_safetensors(path: str) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, (f.metadata() or {})
    except Exception as error:  # SafetensorError, OSError, ... for a damaged file
        raise UserError(f"cannot read {path} as safetensors: {_why(error)}") from None


def _read_torch(path: str) -> dict:
    try:
        import torch
    except ImportError:
        raise UserError(f"{path} is a PyTorch file: install torch, or convert it once elsewhere with "
                        f"`relrank convert {path} vgg16.safetensors`") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a damaged file
        raise UserError(f"cannot read {path} as a PyTorch state dict: {_why(error)}") from None
    if not isinstance(state, dict) or not all(hasattr(v, "numpy") for v in state.values()):
        raise UserError(f"{path}: not a PyTorch state dict of tensors; supported files: {SUPPORTED}")
    return {k: v.numpy() for k, v in state.items()}


def _from_relrank(tensors: dict, metadata: dict, path: str) -> Pretrained:
    """A file of `convert`: tensors already in relrank's layout (shapes are checked against the model)."""
    params = {}
    for layer in BACKBONE_LAYERS:
        params[layer] = {}
        for kind in ("kernel", "bias"):
            key = f"{layer}.{kind}"
            if key not in tensors:
                raise UserError(f"{path}: no tensor {key!r} (layer {layer}); was it written by "
                                f"`relrank convert`?")
            params[layer][kind] = np.asarray(tensors[key], np.float32)
    return Pretrained(params, _stored_preprocessing(metadata, path), path)


def _stored_preprocessing(metadata: dict, path: str) -> Preprocessing:
    try:
        prep = Preprocessing.from_json(json.loads(metadata.get("preprocessing", "{}")))
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: unreadable preprocessing metadata: {_why(error)}") from None
    return _checked(prep, path)


def _kind(path: str) -> str:
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} does not exist")
    ext = os.path.splitext(path)[1].lower()
    kinds = {".safetensors": "safetensors", ".pth": "torch", ".pt": "torch", ".pkl": "pickle", ".pickle": "pickle"}
    if ext not in kinds:
        raise UserError(f"{path}: unknown kind of weights file; supported files: {SUPPORTED}")
    return kinds[ext]


def _read_lasagne(path: str) -> dict:
    data = read_pickle(path)
    if not isinstance(data, dict) or "param values" not in data:
        raise UserError(f"{path}: not a Lasagne VGG-16 pickle (no 'param values'); supported files: {SUPPORTED}")
    return data


def preprocessing_of(path: str) -> Preprocessing:
    """The input preprocessing the weights in `path` expect (read from the file where it says)."""
    kind = _kind(path)
    if kind == "pickle":
        return _caffe_preprocessing(_read_lasagne(path).get("mean value", CAFFE_MEAN_BGR), path)
    if kind == "safetensors":
        from safetensors import safe_open

        try:
            with safe_open(path, framework="numpy") as f:
                metadata = f.metadata() or {}
        except Exception as error:  # SafetensorError, OSError, ... for a damaged file
            raise UserError(f"cannot read {path} as safetensors: {_why(error)}") from None
        if "preprocessing" in metadata:
            return _stored_preprocessing(metadata, path)
    return TORCHVISION_PREPROCESSING


def load_pretrained(path: str) -> Pretrained:
    """Read a weights file of any supported kind into relrank's layout (the last file read is kept, so the check
    before a run and the run itself read it once)."""
    stat = os.stat(path) if os.path.isfile(path) else None
    return _load_pretrained(path, stat and (stat.st_size, stat.st_mtime_ns, stat.st_ino))


@functools.lru_cache(maxsize=1)
def _load_pretrained(path: str, version) -> Pretrained:
    kind = _kind(path)
    if kind == "safetensors":
        tensors, metadata = _read_safetensors(path)
        if "conv1_1.kernel" in tensors:
            return _from_relrank(tensors, metadata, path)
        return from_torch_layout(tensors, path)
    if kind == "torch":
        return from_torch_layout(_read_torch(path), path)
    data = _read_lasagne(path)
    return from_lasagne(list(data["param values"]), data.get("mean value", CAFFE_MEAN_BGR), path)


def check_weights(config) -> None:
    """Read `config.weights` and check it fits `config`'s model: before any data work, a bad file is one line."""
    from relrank.model.network import param_shapes  # JAX: only where parameters are built (convert stays light)

    merge_backbone(param_shapes(config), load_pretrained(config.weights),
                   f"--model={config.model} --image_size={config.image_size}", shapes_only=True)


def merge_backbone(params: dict, pretrained: Pretrained, model_description: str, shapes_only: bool = False) -> dict:
    """`params` with its backbone replaced by the pretrained one (the head stays as it is)."""
    merged = dict(params)
    for layer in BACKBONE_LAYERS:
        merged[layer] = {}
        for kind in ("kernel", "bias"):
            expected, got = tuple(params[layer][kind].shape), tuple(pretrained.params[layer][kind].shape)
            if expected != got:
                raise UserError(f"{pretrained.source}: layer {layer} {kind} has shape {got} in the file but "
                                f"{expected} in the model ({model_description})")
            if not shapes_only:
                merged[layer][kind] = np.asarray(pretrained.params[layer][kind], np.float32)
    return merged


def convert(source: str, target: str) -> None:
    """Write `source` in relrank's layout as .safetensors (no torch needed to read it)."""
    from safetensors.numpy import save_file

    pretrained = load_pretrained(source)
    tensors = {f"{layer}.{kind}": np.ascontiguousarray(arrays[kind])
               for layer, arrays in pretrained.params.items() for kind in ("kernel", "bias")}
    save_file(tensors, target, metadata={"preprocessing": json.dumps(dataclasses.asdict(pretrained.preprocessing)),
                                         "source": os.path.basename(source)})


def starting_params(config) -> dict:
    """The parameters a run starts from: fresh ones, the backbone replaced by `config.weights` when given."""
    from relrank.model.network import random_params

    params = random_params(config)
    if not config.weights:
        return params
    return merge_backbone(params, load_pretrained(config.weights), f"--model={config.model} --image_size={config.image_size}")
