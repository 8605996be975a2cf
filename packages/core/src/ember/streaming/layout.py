"""The byte stream of one tensor: a single-tensor safetensors file, built without copying.

A tensor is served as ``8-byte header length | JSON header | raw little-endian data``,
byte-for-byte what ``safetensors.numpy.save({name: array})`` writes, so a receiver can
write the stream straight to a ``.safetensors`` file (disk offload) or into a
preallocated array. The owner never materializes the stream: the header is a few bytes and
every chunk of data is a slice of the array's own memory.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ember.streaming.errors import StreamingError

# safetensors dtype codes for the numpy dtypes it supports
_CODES: dict[str, str] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}
# safetensors dtypes numpy lacks: a framework's tensor adapter serves their bits as unsigned
# integers of the same size; a plain receiver gets those bits, an adapter the values
BITS_CODES: dict[str, np.dtype[Any]] = {
    "BF16": np.dtype("uint16"),
    "F8_E4M3": np.dtype("uint8"),
    "F8_E5M2": np.dtype("uint8"),
}
_DTYPES = {code: np.dtype(name) for name, code in _CODES.items()} | BITS_CODES


def streamable(dtype: np.dtype[Any]) -> bool:
    """Whether arrays of ``dtype`` travel as safetensors streams (else inline in FOBS)."""
    return dtype.name in _CODES and dtype.byteorder in ("=", "<", "|")


MAX_HEADER_BYTES = 100 * 1024 * 1024
"""A tensor header longer than this is refused (a corrupt or hostile length prefix)."""


def tensor_header(name: str, array: np.ndarray[Any, Any], code: str | None = None) -> bytes:
    """The safetensors header (length prefix included) for one C-ordered tensor; ``code``
    names a dtype numpy lacks (``BF16``...) whose bits ``array`` holds."""
    if code is None:
        code = _CODES[array.dtype.name]
    elif _DTYPES.get(code) != array.dtype:
        raise StreamingError(f"a {code} tensor is served as {_DTYPES.get(code)}, not {array.dtype}")
    meta = {
        name: {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [0, array.nbytes],
        }
    }
    text = json.dumps(meta, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def parse_header(data: bytes) -> tuple[str, np.dtype[Any], tuple[int, ...], int]:
    """Name, dtype, shape and data length from a tensor header (without the length prefix)."""
    try:
        meta = json.loads(data)
        ((name, info),) = ((k, v) for k, v in meta.items() if k != "__metadata__")
        dtype = _DTYPES[info["dtype"]]
        shape = tuple(int(s) for s in info["shape"])
        start, end = (int(x) for x in info["data_offsets"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamingError(f"malformed tensor header: {exc}") from exc
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if start != 0 or end != count * dtype.itemsize or min(shape, default=0) < 0:
        raise StreamingError(f"tensor header of {name!r} disagrees with its shape {shape}")
    return name, dtype, shape, end


def write_tensor_file(path: Path, name: str, flat: np.ndarray[Any, Any]) -> None:
    """``flat`` (C-contiguous) as a one-tensor ``.safetensors`` file, written straight from
    its memory (no serialized copy); atomically, a partial file never appears."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(tensor_header(name, flat))
        if flat.nbytes:
            # numpy's stubs give ndarray the buffer protocol (__buffer__) only on Python 3.12+
            f.write(memoryview(flat.reshape(-1).view(np.uint8)))  # type: ignore[arg-type]
    os.replace(tmp, path)


def read_tensor_file(path: Path) -> tuple[str, np.ndarray[Any, Any]]:
    """A one-tensor ``.safetensors`` file (a tensor stream) as its name and a fresh flat
    writable array."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise StreamingError(f"{path} is not a tensor file: it is too short")
        (hlen,) = struct.unpack("<Q", head)
        if hlen > MAX_HEADER_BYTES:
            raise StreamingError(f"{path}: a tensor header of {hlen} bytes is not plausible")
        name, dtype, shape, size = parse_header(f.read(hlen))
        flat = np.empty(int(np.prod(shape, dtype=np.int64)) if shape else 1, dtype=dtype)
        # numpy's stubs give ndarray the buffer protocol (__buffer__) only on Python 3.12+
        if size and f.readinto(memoryview(flat.view(np.uint8))) != size:  # type: ignore[arg-type]
            raise StreamingError(f"{path} is truncated: its header promises {size} bytes")
    return name, flat
