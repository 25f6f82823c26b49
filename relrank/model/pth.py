"""PyTorch weight files (.pth, .pt, .bin) read into numpy without torch, and without running their code.

`torch.save` writes one of two formats, both a pickle whose tensors refer to raw storages by key:
  zip (torch >= 1.6)   ARCHIVE/data.pkl, one file ARCHIVE/data/KEY per storage, ARCHIVE/byteorder;
  legacy               five pickles in a row (magic number, protocol, system info, the object, the storage
                       keys), then each storage as an int64 element count and its raw bytes.
The pickle is read by an unpickler that knows a short list of names (containers, torch's tensor-rebuild
functions, storage types): anything else, such as a call into `os`, is refused before it runs. Tensors
become numpy arrays viewed on their storage with their offset, shape and strides, so shared and
non-contiguous tensors come out as torch would give them.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafePickle(pickle.UnpicklingError):
    """The file asks for a name that is not a container, tensor or storage: it is not loaded."""


@dataclasses.dataclass
class _Storage:
    """A storage the pickle refers to: its element type and key; its bytes are attached once read."""

    dtype: np.dtype
    key: str
    data: np.ndarray | None = None


@dataclasses.dataclass
class _TensorView:
    """A tensor as the pickle describes it; `array()` views it on its storage once the storage is read."""

    storage: _Storage
    offset: int
    shape: tuple
    strides: tuple

    def array(self) -> np.ndarray:
        data = self.storage.data
        if not self.shape:
            return np.array(data[self.offset])
        itemsize = data.dtype.itemsize
        needed = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.shape, self.strides) if n > 0)
        if any(n == 0 for n in self.shape):
            return np.zeros(self.shape, data.dtype)
        if needed > len(data):
            raise pickle.UnpicklingError(f"a tensor of shape {self.shape} reaches past its storage "
                                         f"({len(data)} elements)")
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.shape,
                                               tuple(s * itemsize for s in self.strides), writeable=False)
        return np.array(view)


def _rebuild_tensor(storage, offset, shape, strides, *_):
    """torch._utils._rebuild_tensor(_v2): requires_grad, hooks and metadata do not matter to numpy."""
    return _TensorView(storage, int(offset), tuple(shape), tuple(strides))


def _rebuild_parameter(data, *_):
    return data


def only_latin1(obj, encoding="utf-8", errors="strict"):
    """`_codecs.encode` as protocol-2 (Python 2) pickles of byte strings use it (latin-1), and nothing else."""
    if encoding not in ("latin1", "latin-1") or not isinstance(obj, str):
        raise UnsafePickle(f"the pickle asks for _codecs.encode with {encoding!r}")
    return obj.encode("latin1", errors)


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): only_latin1,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file, encoding="latin1")
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise UnsafePickle(f"the pickle asks for {module}.{name}")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafePickle(f"the pickle refers to an unknown kind of object {pid!r:.60}")
        storage_type, key = pid[1], str(pid[2])
        if not (isinstance(storage_type, type) and storage_type in STORAGE_DTYPES.values()):
            raise UnsafePickle(f"the pickle refers to a storage of unknown type {storage_type!r:.60}")
        if key not in self.storages:
            self.storages[key] = _Storage(np.dtype(storage_type), key)
        storage = self.storages[key]
        view = pid[5] if len(pid) > 5 else None  # legacy files: a storage view (key, offset, size)
        if view is not None:
            raise UnsafePickle("the file uses storage views (torch < 0.4), which relrank does not read")
        return storage


def _materialise(obj):
    """The unpickled object with every tensor turned into a numpy array."""
    if isinstance(obj, _TensorView):
        return obj.array()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items()) if isinstance(obj, collections.OrderedDict) \
            else {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _read_zip(path: str) -> object:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl")]
        if not pickles:
            raise pickle.UnpicklingError("a zip file without data.pkl: not written by torch.save")
        root = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(root + "byteorder").decode().strip() if root + "byteorder" in names else "little"
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{root}data/{key}")
            storage.data = _from_bytes(raw, storage.dtype, byteorder)
    return _materialise(obj)


def _read_legacy(path: str) -> object:
    with open(path, "rb") as f:
        magic = pickle.load(f)  # plain ints: the safe unpickler is needed only for the object
        if magic != LEGACY_MAGIC:
            raise pickle.UnpicklingError("not a PyTorch file (no torch.save magic number)")
        pickle.load(f)  # protocol version
        system = _Unpickler(f, {}).load()
        byteorder = "little" if not isinstance(system, dict) or system.get("little_endian", True) else "big"
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(f, storages).load()
        keys = _Unpickler(f, {}).load()
        for key in keys:
            storage = storages[str(key)]
            (count,) = struct.unpack("<q" if byteorder == "little" else ">q", f.read(8))
            raw = f.read(count * storage.dtype.itemsize)
            if len(raw) != count * storage.dtype.itemsize:
                raise EOFError("the file ends inside a tensor's data")
            storage.data = _from_bytes(raw, storage.dtype, byteorder)
    return _materialise(obj)


def _from_bytes(raw: bytes, dtype: np.dtype, byteorder: str) -> np.ndarray:
    data = np.frombuffer(raw, dtype)
    return data.byteswap() if byteorder == "big" and dtype.itemsize > 1 else data


def load(path: str) -> object:
    """The object `torch.save` wrote to `path`, with numpy arrays for tensors. Raises `UnsafePickle` for a
    file that asks for anything but containers, tensors and storages, and pickle/zip/EOF errors for a
    damaged one."""
    return _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
