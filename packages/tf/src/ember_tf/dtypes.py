"""TensorFlow tensors <-> numpy wire arrays: the dtype table the decomposers and the tensor
adapter share.

A tensor travels as its TF dtype name plus a numpy array of its bits (little-endian, on the
host). numpy lacks some TF dtypes (bfloat16, the float8 and float4 family, int4/uint4 and
int2/uint2, which TF's ``.numpy()`` hands out as ``ml_dtypes`` arrays): those travel as a
same-size unsigned integer view of their bits, so nothing is rounded and no ``ml_dtypes``
type ever goes on the wire.

:data:`DTYPES` is an allow-list: a dtype name off the wire that is not in it is refused.
Deliberately left out:

- ``tf.string``: refused (the wire carries numeric tensors only; send ``t.numpy().tolist()``,
  a list of ``bytes``, instead);
- the quantized dtypes (``qint8``, ``quint8``, ``qint16``, ``quint16``, ``qint32``):
  refused, dequantize first (``tf.quantization.dequantize``);
- ``resource`` and ``variant`` handles, which hold no data of their own.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import tensorflow as tf

# TF dtypes numpy has: the wire array is the tensor's own numpy array
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
# TF dtypes numpy lacks (ml_dtypes types on the TF side) -> the unsigned integer their bits
# travel as; TF stores the 4- and 2-bit ones in a byte per element, like ml_dtypes
_BITS = {
    "bfloat16": "uint16",
    "float8_e4m3fn": "uint8",
    "float8_e4m3fnuz": "uint8",
    "float8_e4m3b11fnuz": "uint8",
    "float8_e5m2": "uint8",
    "float8_e5m2fnuz": "uint8",
    "float4_e2m1fn": "uint8",
    "int4": "uint8",
    "uint4": "uint8",
    "int2": "uint8",
    "uint2": "uint8",
}
_QUANTIZED = ("qint8", "quint8", "qint16", "quint16", "qint32")

Row = tuple[Any, np.dtype[Any], np.dtype[Any] | None]


def _tf_dtype(name: str) -> Any:
    try:
        dtype = tf.dtypes.as_dtype(name)
    except TypeError:  # an older TF without it
        return None
    return dtype if dtype.name == name else None


def _table() -> dict[str, Row]:
    table: dict[str, Row] = {}
    for name in _NATIVE:
        dtype = _tf_dtype(name)
        if dtype is not None:
            table[name] = (dtype, np.dtype(name).newbyteorder("<"), None)
    for name, wire in _BITS.items():
        dtype = _tf_dtype(name)
        if dtype is not None:
            value = np.dtype(dtype.as_numpy_dtype)  # the ml_dtypes type TF hands out
            table[name] = (dtype, np.dtype(wire).newbyteorder("<"), value)
    return table


#: every TF dtype Ember sends, by name -> (tf.DType, numpy dtype of the wire array, the
#: ``ml_dtypes`` dtype its bits are viewed as or None). Names off the wire are looked up here.
DTYPES: dict[str, Row] = _table()

_BIG_ENDIAN = sys.byteorder == "big"


def _refusal(name: str) -> str:
    if name == "string":
        return (
            "tf.string tensors are not supported; send t.numpy().tolist() (a list of bytes) instead"
        )
    if name in _QUANTIZED:
        return (
            f"quantized tensors ({name}) are not supported; dequantize them first "
            "(tf.quantization.dequantize)"
        )
    return f"TensorFlow tensors of dtype {name} are not supported"


def is_keras_variable(value: Any) -> bool:
    return any(
        f"{c.__module__}.{c.__qualname__}" == "keras.src.backend.common.variables.Variable"
        for c in type(value).__mro__
    )


def _host_array(tensor: Any) -> np.ndarray[Any, Any]:
    """The tensor's values on the host; an eager tensor's own (immutable) memory when it is
    on the CPU, read-only, so sending a large tensor copies nothing."""
    grab = getattr(tensor, "_numpy", None)  # EagerTensor: a view, where .numpy() copies
    if grab is None:
        grab = getattr(tensor, "numpy", None)
    if grab is None:
        raise TypeError(
            "a symbolic tensor (inside a tf.function or a graph) has no value to send; "
            "send it from eager code"
        )
    array = np.asarray(grab())
    array.flags.writeable = False
    return array


def array_to_wire(array: np.ndarray[Any, Any]) -> tuple[str, np.ndarray[Any, Any]]:
    """The TF dtype name and wire array of a host array of a TF dtype (a numpy array, or an
    ``ml_dtypes`` one such as TF's ``.numpy()`` of a bfloat16 tensor returns)."""
    name = array.dtype.name
    if name not in DTYPES:
        raise TypeError(_refusal(name))
    _, wire, value = DTYPES[name]
    if value is not None:
        if array.dtype != value:
            raise TypeError(f"an array of dtype {array.dtype} is not a TensorFlow {name} one")
        array = array.view(wire.newbyteorder("="))  # ml_dtypes arrays are native-endian
    return name, array.astype(wire, copy=False)  # little-endian: no copy on such a host


def tensor_to_wire(value: Any) -> tuple[str, np.ndarray[Any, Any]]:
    """The TF dtype name and a numpy array of the bits of a ``tf.Tensor``, a ``tf.Variable``
    (its current value) or a Keras variable; raises ``TypeError`` for what cannot be sent."""
    if isinstance(value, tf.Variable):
        value = value.read_value()
    elif is_keras_variable(value):
        inner = value.value  # a tf.Variable with the TF backend
        if isinstance(inner, tf.Variable | tf.Tensor):
            return tensor_to_wire(inner)
        return array_to_wire(np.asarray(inner))  # another Keras backend's array
    elif not isinstance(value, tf.Tensor):
        raise TypeError(f"{type(value).__module__}.{type(value).__name__} is not a tf.Tensor")
    name = value.dtype.base_dtype.name
    if name not in DTYPES:
        raise TypeError(_refusal(name))
    return array_to_wire(_host_array(value))


def check_wire(name: Any, array: Any) -> Row:
    """The dtype table row for ``name``, if ``array`` is an ndarray of its wire dtype."""
    if not isinstance(name, str) or name not in DTYPES:
        raise ValueError(f"unknown TensorFlow dtype {str(name)[:40]!r}")
    row = DTYPES[name]
    if not isinstance(array, np.ndarray) or array.dtype != row[1]:
        got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"a TensorFlow {name} tensor must travel as {row[1]}, got {got}")
    return row


def _values(name: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The wire array in native byte order, viewed as its TF dtype's numpy (or ml_dtypes)
    type."""
    _, wire, value = check_wire(name, array)
    if _BIG_ENDIAN:
        array = array.astype(wire.newbyteorder("="))
    return array if value is None else array.view(value)


def tensor_from_wire(name: str, array: np.ndarray[Any, Any]) -> Any:
    """Inverse of :func:`tensor_to_wire`: a ``tf.Tensor`` (eager, on TF's default device)
    holding a copy of ``array``'s bits; ``ValueError`` for a name or array off the table."""
    values = _values(name, array)
    tensor = tf.constant(values)
    if tensor.dtype != DTYPES[name][0]:  # never expected: TF infers it from the array
        raise ValueError(f"TensorFlow made a {tensor.dtype.name} tensor of a {name} array")
    return tensor


def numpy_value(name: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """What the server aggregates: the array itself, or for dtypes numpy lacks, the values
    widened exactly to float32 (bfloat16 bit for bit, NaN payloads included)."""
    _, _, value = check_wire(name, array)
    if value is None:
        return array if not _BIG_ENDIAN else _values(name, array)
    if name == "bfloat16":  # the top half of a float32's bits: exact
        return (array.astype(np.uint32) << 16).view(np.float32)
    return _values(name, array).astype(np.float32)  # every value fits a float32
