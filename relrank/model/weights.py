"""Pretrained weights from the files users have, with the preprocessing they expect.

Files: .safetensors, PyTorch state dicts (.pth, .pt, .bin; read without torch by relrank/model/pth.py), Lasagne pickles (.pkl, VGG-16
only) and HF model folders (config.json + model.safetensors or pytorch_model.bin, with
preprocessor_config.json's mean and std). Layouts, told apart by their tensor names:
  VGG-16      torchvision (vgg16-397923af.pth), timm vgg16.tv_in1k (fc6/fc7 stored as 7x7 and 1x1
              convolutions: pre_logits.fc1/fc2), the original code's Lasagne/Caffe vgg16.pkl
              ({'param values': [...], 'mean value': ...}), relrank's (`relrank convert IN OUT`)
  GoogLeNet   torchvision (relrank/model/googlenet.py)
  ResNet-50   torchvision and timm (the same names; relrank/model/resnet.py)
  ViTs        timm, torchvision, HF transformers, OpenAI/open_clip CLIP (relrank/model/vit_ports.py)

Layouts: PyTorch and Lasagne convolutions are OIHW (relrank: HWIO); their fc6
flattens pool5 as C,H,W while relrank (NHWC) flattens H,W,C, so fc6 is
permuted, not merely transposed. The ImageNet classifier (fc8) is dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle

import numpy as np

from relrank.config import CONV_LAYERS_PER_BLOCK, IMAGENET, Preprocessing, conv_layer_names
from relrank.errors import UserError
from relrank.model import pth

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
CAFFE_PREPROCESSING = Preprocessing(channel_order="BGR", scale=1.0, mean=CAFFE_MEAN_BGR, std=(1.0, 1.0, 1.0))
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
BACKBONE_LAYERS = tuple(conv_layer_names()) + ("fc6", "fc7")
SUPPORTED = (
    "torchvision state dict (.pth or .safetensors), timm vgg16.tv_in1k (.safetensors), "
    "Lasagne/Caffe vgg16.pkl, relrank (.safetensors from `relrank convert`)"
)
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclasses.dataclass
class Pretrained:
    """Backbone parameters {layer: {'kernel', 'bias'}} in relrank's layout, and their preprocessing."""

    params: dict
    preprocessing: Preprocessing
    source: str
    layout: str = ""


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
    return Pretrained(params, IMAGENET, source)


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
            return pth.only_latin1
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
    """A PyTorch state dict (or a checkpoint holding one under 'state_dict' or 'model'), read without torch."""
    try:
        state = pth.load(path)
    except pth.UnsafePickle as error:
        raise UserError(f"refusing to load {path}: {error}, which is not a tensor or plain container") from None
    except Exception as error:  # a damaged file fails in many ways (BadZipFile, EOFError, UnpicklingError, ...)
        raise UserError(f"cannot read {path} as a PyTorch state dict: {_why(error)}") from None
    if isinstance(state, dict):
        state = next((state[k] for k in ("state_dict", "model") if isinstance(state.get(k), dict)), state)
    if not isinstance(state, dict) or not state or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise UserError(f"{path}: not a PyTorch state dict of tensors; supported files: {SUPPORTED}")
    return dict(state)


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
    if os.path.isdir(path):
        return "folder"
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} does not exist")
    ext = os.path.splitext(path)[1].lower()
    kinds = {".safetensors": "safetensors", ".pth": "torch", ".pt": "torch", ".bin": "torch", ".pkl": "pickle",
             ".pickle": "pickle"}
    if ext not in kinds:
        raise UserError(f"{path}: unknown kind of weights file (.safetensors, .pth, .pt, .bin, .pkl or an HF model "
                        f"folder); supported files: {SUPPORTED}")
    return kinds[ext]


def _hf_weights_file(folder: str) -> str:
    for name in HF_WEIGHTS:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise UserError(f"folder {folder} holds no {' or '.join(HF_WEIGHTS)}: give an HF model folder or a weights file")


def _hf_preprocessing(folder: str) -> Preprocessing | None:
    """The mean and std of an HF folder's preprocessor_config.json, if it has one."""
    path = os.path.join(folder, "preprocessor_config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            about = json.load(f)
        prep = Preprocessing(scale=float(about.get("rescale_factor", 1 / 255)),
                             mean=tuple(about["image_mean"]), std=tuple(about["image_std"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: unreadable preprocessing ({_why(error)}); it needs image_mean and image_std") from None
    return _checked(prep, path)


def _read_tensors(path: str) -> tuple[dict, dict]:
    """(tensors, safetensors metadata) of a .safetensors or PyTorch file, or of an HF folder's weights."""
    kind = _kind(path)
    if kind == "folder":
        return _read_tensors(_hf_weights_file(path))
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "torch":
        return _read_torch(path), {}
    raise UserError(f"{path}: a pickle holds Lasagne VGG-16 weights only; for other models give a .safetensors, "
                    f".pth or .bin state dict, or an HF model folder")


def _read_lasagne(path: str) -> dict:
    data = read_pickle(path)
    if not isinstance(data, dict) or "param values" not in data:
        raise UserError(f"{path}: not a Lasagne VGG-16 pickle (no 'param values'); supported files: {SUPPORTED}")
    return data


def _load_other(path: str, architecture: str) -> Pretrained:
    """Any backbone but VGG: the file's tensors ported by its entry's `port`; the preprocessing from the HF
    folder if it says, else the one that layout's weights were trained with."""
    from relrank.model.registry import backbone

    entry = backbone(architecture)
    tensors, metadata = _read_tensors(path)
    params, layout = entry.port(_NamedTensors(tensors, path, architecture), path)
    prep = (_hf_preprocessing(path) if os.path.isdir(path) else None) or \
        (_stored_preprocessing(metadata, path) if "preprocessing" in metadata else None) or \
        entry.preprocessing.get(layout)
    if prep is None:
        raise UserError(f"{path}: a {layout}-layout file is not a {architecture} checkpoint relrank knows")
    return Pretrained(params, prep, path, layout)


class _NamedTensors(dict):
    """A state dict whose missing tensor is a one-line error naming it."""

    def __init__(self, tensors: dict, source: str, architecture: str):
        super().__init__(tensors)
        self.source, self.architecture = source, architecture

    def __missing__(self, key):
        first = next(iter(self), "none")
        raise UserError(f"{self.source}: no tensor {key!r}, which a {self.architecture} file has (the "
                        f"file's first tensor is {first!r}: is it another model?)")


def preprocessing_of(path: str, architecture: str = "vgg") -> Preprocessing:
    """The input preprocessing the weights in `path` expect (read from the file where it says)."""
    if architecture != "vgg":
        return load_pretrained(path, architecture).preprocessing
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
    return IMAGENET


def load_pretrained(path: str, architecture: str = "vgg") -> Pretrained:
    """Read a weights file (or HF folder) of any supported kind into relrank's layout for `architecture` (the last
    file read is kept, so the check before a run and the run itself read it once)."""
    return _load_pretrained(path, architecture, file_version(path))


def file_version(path: str):
    """(size, mtime, inode) of a weights file (of an HF folder's), None if there is none: changes when it does."""
    if os.path.isdir(path):
        path = next((os.path.join(path, n) for n in HF_WEIGHTS if os.path.isfile(os.path.join(path, n))), path)
    stat = os.stat(path) if os.path.isfile(path) else None
    return stat and (stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=1)
def _load_pretrained(path: str, architecture: str, version) -> Pretrained:
    if architecture != "vgg":
        return _load_other(path, architecture)
    kind = _kind(path)
    if kind == "folder":
        raise UserError(f"{path} is a folder: VGG-16 weights are a file ({SUPPORTED})")
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

    merge_backbone(param_shapes(config), load_pretrained(config.weights, config.spec.architecture),
                   f"--model={config.model} --image_size={config.image_size}", shapes_only=True)


def merge_backbone(params: dict, pretrained: Pretrained, model_description: str, shapes_only: bool = False) -> dict:
    """`params` with its backbone (all but the head) replaced by the pretrained one; a tensor the file lacks, or
    of another shape, is a one-line error naming it and both shapes."""
    def merged(path: str, mine, theirs):
        if not isinstance(mine, dict):
            got = np.shape(theirs)
            if tuple(mine.shape) != got:
                layer, _, kind = path.rpartition(".")
                raise UserError(f"{pretrained.source}: layer {layer} {kind} has shape {got} in the file but "
                                f"{tuple(mine.shape)} in the model ({model_description})")
            return mine if shapes_only else np.asarray(theirs, np.float32)
        out = {}
        for key, value in mine.items():
            name = f"{path}.{key}" if path else str(key)
            if key not in theirs:
                raise UserError(f"{pretrained.source}: the file has no weights for {name} of the model "
                                f"({model_description}): is it the weights of another model?")
            out[key] = merged(name, value, theirs[key])
        return out

    backbone = merged("", {k: v for k, v in params.items() if k != "head"}, pretrained.params)
    return {**backbone, "head": params["head"]}


def convert(source: str, target: str) -> None:
    """Write `source` in relrank's layout as .safetensors (no torch needed to read it)."""
    from safetensors.numpy import save_file

    pretrained = load_pretrained(source)
    tensors = {f"{layer}.{kind}": np.ascontiguousarray(arrays[kind])
               for layer, arrays in pretrained.params.items() for kind in ("kernel", "bias")}
    save_file(tensors, target, metadata={"preprocessing": json.dumps(dataclasses.asdict(pretrained.preprocessing)),
                                         "source": os.path.basename(source)})


def starting_params(config) -> dict:
    """The parameters a run starts from: fresh ones, or with `config.weights` the file's backbone and a fresh
    ranking layer (the backbone's random init is never computed: it takes seconds for the large ones)."""
    from relrank.model.network import param_shapes, random_head, random_params

    if not config.weights:
        return random_params(config)
    return merge_backbone({**param_shapes(config), **random_head(config)},
                          load_pretrained(config.weights, config.spec.architecture),
                          f"--model={config.model} --image_size={config.image_size}")
