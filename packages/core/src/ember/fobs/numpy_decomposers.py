"""Decomposers for numpy arrays and scalars: raw buffers, no per-element work.

These send every array inline; ``ember.streaming.array_decomposers`` builds on them to offer
large arrays for download (what core registers).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ember.fobs.decomposer import Buffer, Context
from ember.fobs.errors import FOBSError

_StringDType = getattr(np.dtypes, "StringDType", None)

Order = Literal["C", "F"]


def flat_in_order(array: np.ndarray[Any, Any]) -> tuple[Order, np.ndarray[Any, Any]]:
    """``(order, data)``: a C-contiguous array whose flat memory is ``array`` flattened in
    ``order`` ("C" or "F"); no copy unless ``array`` is neither C- nor F-contiguous."""
    if array.flags.c_contiguous:
        return "C", array
    if array.flags.f_contiguous:
        return "F", array.T
    return "C", np.ascontiguousarray(array)


#: the ``ml_dtypes`` types (TensorFlow's and JAX's bfloat16, float8, int4, ...) decoded by
#: name; an allow-list: a name off the wire is looked up here, never imported
ML_DTYPES = frozenset(
    {
        "bfloat16",
        "float8_e3m4",
        "float8_e4m3",
        "float8_e4m3b11fnuz",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e5m2",
        "float8_e5m2fnuz",
        "float8_e8m0fnu",
        "float6_e2m3fn",
        "float6_e3m2fn",
        "float4_e2m1fn",
        "int2",
        "int4",
        "uint2",
        "uint4",
    }
)


def dtype_to_wire(dtype: np.dtype[Any]) -> Any:
    """Describe a dtype with msgpack-native values (no pickle, no eval on the way back)."""
    if dtype.type.__module__ == "ml_dtypes" and dtype.name in ML_DTYPES:
        return {"ml_dtypes": dtype.name}
    if dtype.hasobject:
        raise FOBSError(
            f"numpy arrays of dtype {dtype} hold Python object pointers and cannot be sent; "
            "convert them to a concrete dtype (or a list) first"
        )
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return {"sub": [dtype_to_wire(base), list(shape)]}
    if dtype.fields is None:
        return dtype.str
    names = list(dtype.names or ())
    fields = [dtype.fields[n] for n in names]
    wire: dict[str, Any] = {
        "names": names,
        "formats": [dtype_to_wire(f[0]) for f in fields],
        "offsets": [f[1] for f in fields],
        "itemsize": dtype.itemsize,
    }
    titles = [f[2] if len(f) > 2 else None for f in fields]
    if any(t is not None for t in titles):
        wire["titles"] = titles
    return wire


def dtype_from_wire(wire: Any, depth: int = 0) -> np.dtype[Any]:
    """Rebuild a dtype from :func:`dtype_to_wire`'s output, refusing object dtypes."""
    if depth > 32:
        raise FOBSError("malformed dtype: nested too deeply")
    try:
        if isinstance(wire, str):
            dtype = np.dtype(wire)
        elif isinstance(wire, dict) and set(wire) == {"ml_dtypes"}:
            dtype = _ml_dtype(wire["ml_dtypes"])
        elif isinstance(wire, dict) and set(wire) == {"sub"}:
            base, shape = wire["sub"]
            if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
                raise FOBSError("malformed dtype: bad sub-array shape")
            dtype = np.dtype((dtype_from_wire(base, depth + 1), tuple(shape)))
        elif isinstance(wire, dict) and {"names", "formats", "offsets", "itemsize"} <= set(wire):
            spec: dict[str, Any] = {
                "names": wire["names"],
                "formats": [dtype_from_wire(f, depth + 1) for f in wire["formats"]],
                "offsets": wire["offsets"],
                "itemsize": wire["itemsize"],
            }
            if not all(isinstance(n, str) for n in spec["names"]):
                raise FOBSError("malformed dtype: field names must be strings")
            if "titles" in wire:
                spec["titles"] = wire["titles"]
            # numpy's stubs take a field dict only as their private _DTypeDict TypedDict
            dtype = np.dtype(spec)  # type: ignore[call-overload]
        else:
            raise FOBSError(f"malformed dtype description of type {type(wire).__name__}")
    except FOBSError:
        raise
    except Exception as exc:
        raise FOBSError(f"malformed dtype {str(wire)[:80]!r}: {exc}") from exc
    if dtype.hasobject:
        raise FOBSError(f"refusing dtype {dtype}: object dtypes are never decoded")
    return dtype


def _ml_dtype(name: Any) -> np.dtype[Any]:
    """An ``ml_dtypes`` dtype by its allow-listed name (the package ships with TF and JAX)."""
    if not isinstance(name, str) or name not in ML_DTYPES:
        raise FOBSError(f"malformed dtype: {str(name)[:40]!r} is not an ml_dtypes type")
    try:
        import ml_dtypes
    except ImportError:
        raise FOBSError(
            f"the message holds a {name} array, which needs the ml_dtypes package "
            "(installed with TensorFlow or JAX): pip install ml_dtypes"
        ) from None
    kind = getattr(ml_dtypes, name, None)
    if kind is None:
        raise FOBSError(f"this ml_dtypes ({ml_dtypes.__version__}) has no {name}; upgrade it")
    dtype: np.dtype[Any] = np.dtype(kind)
    return dtype


def _shape(data: Any) -> tuple[int, ...]:
    if not isinstance(data, list) or not all(type(s) is int and s >= 0 for s in data):
        raise FOBSError("malformed ndarray: shape must be a list of non-negative integers")
    return tuple(data)


def array_header(data: dict[str, Any]) -> tuple[np.dtype[Any], tuple[int, ...], Order]:
    """The dtype, shape and order of an encoded array (inline or streamed)."""
    try:
        dtype = dtype_from_wire(data["dtype"])
        shape = _shape(data["shape"])
        order = data["order"]
    except KeyError as exc:
        raise FOBSError(f"malformed ndarray: missing {exc.args[0]!r}") from None
    if order not in ("C", "F"):
        raise FOBSError(f"malformed ndarray: order {order!r}")
    return dtype, shape, order


def _is_string_dtype(dtype: np.dtype[Any]) -> bool:
    return _StringDType is not None and isinstance(dtype, _StringDType)


class NDArrayDecomposer:
    """``numpy.ndarray``: dtype, shape and order in the body, the data as one raw buffer.

    Decoded arrays are views over the received message: read-only when it was ``bytes``,
    writable when it was a ``bytearray`` or read from a stream. C and Fortran layouts are
    kept; other strided views are sent as their C-contiguous copy.
    """

    def supported_type(self) -> type:
        return np.ndarray

    def decompose(self, obj: np.ndarray[Any, Any], ctx: Context) -> Any:
        if _is_string_dtype(obj.dtype):
            na = getattr(obj.dtype, "na_object", None)
            if na is not None:
                raise FOBSError("numpy StringDType arrays with an na_object cannot be sent")
            return {"strings": obj.reshape(-1).tolist(), "shape": list(obj.shape)}
        wire_dtype = dtype_to_wire(obj.dtype)
        order, flat = flat_in_order(obj)
        raw = flat.reshape(-1).view(np.uint8) if flat.nbytes else np.empty(0, np.uint8)
        return {
            "dtype": wire_dtype,
            "shape": list(obj.shape),
            "order": order,
            # numpy's stubs give ndarray the buffer protocol (__buffer__) only on Python 3.12+
            "data": Buffer(memoryview(raw)),  # type: ignore[arg-type]
        }

    def recompose(self, data: Any, ctx: Context) -> Any:
        """An ``ndarray`` (a streamed one is ``ember.streaming``'s to decode)."""
        if not isinstance(data, dict):
            raise FOBSError("malformed ndarray")
        if "strings" in data:
            return self._strings(data)
        dtype, shape, order = array_header(data)
        if "ref" in data:
            raise FOBSError(
                "the message references a streamed array, but it was decoded without a "
                "download service (decode it through a transport, or send with streaming off)"
            )
        if "data" not in data:
            raise FOBSError("malformed ndarray: missing 'data'")
        raw = data["data"]
        if not isinstance(raw, memoryview | bytes):
            raise FOBSError("malformed ndarray: data is not a buffer")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != len(raw):
            raise FOBSError(
                f"malformed ndarray: shape {shape} of {dtype} needs {count * dtype.itemsize} "
                f"bytes, the message has {len(raw)}"
            )
        if count == 0 or dtype.itemsize == 0:
            return np.zeros(shape, dtype=dtype, order=order)
        return np.frombuffer(raw, dtype=dtype).reshape(shape, order=order)

    @staticmethod
    def _strings(data: dict[str, Any]) -> np.ndarray[Any, Any]:
        strings, shape = data["strings"], _shape(data.get("shape"))
        if (
            _StringDType is None
            or not isinstance(strings, list)
            or not all(isinstance(s, str) for s in strings)
        ):
            raise FOBSError("malformed StringDType ndarray")
        try:
            return np.array(strings, dtype=_StringDType()).reshape(shape)
        except ValueError as exc:
            raise FOBSError(f"malformed StringDType ndarray: {exc}") from exc


class MemmapDecomposer(NDArrayDecomposer):
    """``numpy.memmap``: sent as its data; decodes as a plain ``ndarray``."""

    def supported_type(self) -> type:
        return np.memmap


class NumpyScalarDecomposer:
    """Every numpy scalar type (``np.float32(1)``, ``np.bool_``, ``np.datetime64``, ...)."""

    match_subclasses = True

    def supported_type(self) -> type:
        return np.generic

    def decompose(self, obj: np.generic, ctx: Context) -> Any:
        if isinstance(obj, np.str_ | np.bytes_):
            # keep the exact Python value: numpy strips trailing NULs from fixed-width items
            return {"kind": "str" if isinstance(obj, np.str_) else "bytes", "value": obj[:]}
        arr = np.asarray(obj)
        return {"dtype": dtype_to_wire(arr.dtype), "data": arr.tobytes()}

    def recompose(self, data: Any, ctx: Context) -> Any:
        if not isinstance(data, dict):
            raise FOBSError("malformed numpy scalar")
        kind = data.get("kind")
        if kind == "str" and isinstance(data.get("value"), str):
            return np.str_(data["value"])
        if kind == "bytes" and isinstance(data.get("value"), bytes):
            return np.bytes_(data["value"])
        dtype = dtype_from_wire(data.get("dtype"))
        raw = data.get("data")
        if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
            raise FOBSError(f"malformed numpy scalar of {dtype}")
        return np.frombuffer(raw, dtype=dtype).reshape(())[()]
