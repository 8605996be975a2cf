"""torch <-> numpy conversions shared by the decomposer, the persistor and the client helpers.

numpy lacks some torch dtypes (bfloat16, the float8 family): those travel as a same-size
unsigned integer view of their bits plus the torch dtype name, so nothing is rounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

# torch dtype name -> (numpy dtype of the wire array, torch dtype to view the bits as or None)
_NATIVE = [
    "bool",
    "uint8",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]
_BITS = {
    "bfloat16": ("uint16", "int16"),
    "float8_e4m3fn": ("uint8", "uint8"),
    "float8_e4m3fnuz": ("uint8", "uint8"),
    "float8_e5m2": ("uint8", "uint8"),
    "float8_e5m2fnuz": ("uint8", "uint8"),
    "float8_e8m0fnu": ("uint8", "uint8"),
}


def _table() -> dict[str, tuple[torch.dtype, np.dtype[Any], torch.dtype | None]]:
    table: dict[str, tuple[torch.dtype, np.dtype[Any], torch.dtype | None]] = {}
    for name in _NATIVE:
        if isinstance(getattr(torch, name, None), torch.dtype):  # uint16.. need torch >= 2.3
            table[name] = (getattr(torch, name), np.dtype(name).newbyteorder("<"), None)
    for name, (np_name, view) in _BITS.items():
        if isinstance(getattr(torch, name, None), torch.dtype):
            table[name] = (getattr(torch, name), np.dtype(np_name), getattr(torch, view))
    return table


#: every torch dtype Ember sends, by name (an allow-list: names off the wire are looked up here)
DTYPES = _table()


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def tensor_to_wire(tensor: torch.Tensor) -> tuple[str, np.ndarray[Any, Any]]:
    """The torch dtype name and a numpy view of ``tensor``'s bits (on the CPU)."""
    t = tensor.detach()
    if t.layout != torch.strided:
        raise TypeError(f"{t.layout} tensors are not supported; call .to_dense() first")
    if t.is_quantized:
        raise TypeError("quantized tensors are not supported; call .dequantize() first")
    if t.device.type == "meta":
        raise TypeError("a tensor on the meta device has no data to send")
    name = dtype_name(t.dtype)
    if name not in DTYPES:
        raise TypeError(f"torch tensors of dtype {t.dtype} are not supported")
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg()
    _, np_dtype, view = DTYPES[name]
    if view is not None:
        return name, t.view(view).numpy().view(np_dtype)
    return name, t.numpy()


def tensor_from_wire(name: str, array: np.ndarray[Any, Any]) -> torch.Tensor:
    """Inverse of :func:`tensor_to_wire`: a CPU tensor sharing ``array``'s memory when it is
    writable (else a copy)."""
    torch_dtype, _, view = check_wire(name, array)
    if not array.flags.writeable:
        array = array.copy()
    if view is None:
        return torch.from_numpy(array)
    return torch.from_numpy(array.view(dtype_name(view))).view(torch_dtype)


def check_wire(name: Any, array: Any) -> tuple[torch.dtype, np.dtype[Any], torch.dtype | None]:
    """The dtype table row for ``name``, if ``array`` is an ndarray of its wire dtype."""
    if not isinstance(name, str) or name not in DTYPES:
        raise ValueError(f"unknown torch dtype {str(name)[:40]!r}")
    row = DTYPES[name]
    if not isinstance(array, np.ndarray) or array.dtype != row[1]:
        got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"a torch {name} tensor must travel as {row[1]}, got {got}")
    return row


def numpy_value(name: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """What the server aggregates: the array itself, or for dtypes numpy lacks, the values
    widened exactly to float32."""
    torch_dtype, _, view = check_wire(name, array)
    if view is None:
        return array
    if name == "bfloat16":  # the top half of a float32's bits: exact
        return (array.astype(np.uint32) << 16).view(np.float32)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array.view(dtype_name(view))).view(torch_dtype).float().numpy()


def to_numpy(value: Any) -> np.ndarray[Any, Any]:
    """A tensor (or array, or number) as a numpy array; dtypes numpy lacks become float32."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().resolve_conj().resolve_neg()
        if dtype_name(t.dtype) in _BITS:
            t = t.float()
        return t.numpy()
    return np.asarray(value)


def to_tensor(value: Any) -> torch.Tensor:
    """A numpy array (or tensor, or number) as a CPU tensor; shares writable arrays' memory."""
    if isinstance(value, torch.Tensor):
        return value
    array = np.asarray(value)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """A ``state_dict`` (or any mapping of tensors) as the numpy params the server averages.

    Tensors are detached and moved to the CPU; bfloat16/float8 become float32 (exactly)."""
    return {str(k): to_numpy(v) for k, v in state_dict.items()}


def to_state_dict(params: Mapping[str, Any]) -> OrderedDict[str, torch.Tensor]:
    """Received params (numpy arrays) as a ``state_dict`` of CPU tensors, for
    ``model.load_state_dict`` (which casts to the model's own dtypes and device)."""
    return OrderedDict((k, to_tensor(v)) for k, v in params.items())
