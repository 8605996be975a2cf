"""Streaming TF tensors with the download service: one safetensors stream per tensor.

The low-level API for code that moves tensors itself (messages do it transparently):

    ref_id = add_tensors(downloader, {w.path: w for w in model.weights})  # the owner
    tensors = download_tensors("site-1", ref_id, per_request_timeout=30)  # a receiver

Each tensor (a ``tf.Tensor``, a ``tf.Variable``'s or a Keras variable's current value) is
served from its host memory as a single-tensor safetensors stream with its real dtype
(``BF16``, ``F8_E4M3``...), so a receiver may also write it to a ``.safetensors`` file
(``safetensors.tensorflow.load_file`` reads it back). Receivers get eager ``tf.Tensor``
objects, bit-exact.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from ember.streaming import Downloader, Fetcher, Progress, StreamingError
from ember.streaming import add_tensors as _add_tensors
from ember.streaming import download_tensors as _download_tensors
from ember_tf.dtypes import DTYPES, is_keras_variable, tensor_from_wire, tensor_to_wire

# TF dtype name -> safetensors dtype code (complex, the fnuz float8s, float4, int4 and int2
# have none: they travel in messages only)
SAFETENSORS_CODES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "int32": "I32",
    "int64": "I64",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "float16": "F16",
    "float32": "F32",
    "float64": "F64",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
_BY_CODE = {code: name for name, code in SAFETENSORS_CODES.items() if name in DTYPES}
# plain numpy dtypes of streams that carry no code
_BY_NUMPY = {
    row[1]: name for name, row in DTYPES.items() if name in SAFETENSORS_CODES and row[2] is None
}


class TFTensorAdapter:
    """The ``tensorflow`` tensor adapter (registered by ember-tf's plugin)."""

    def supports(self, value: Any) -> bool:
        return isinstance(value, tf.Tensor | tf.Variable) or is_keras_variable(value)

    def to_stream(self, value: Any) -> tuple[np.ndarray[Any, Any], str | None]:
        try:
            name, bits = tensor_to_wire(value)
        except TypeError as exc:
            raise StreamingError(f"cannot offer the tensor for download: {exc}") from None
        code = SAFETENSORS_CODES.get(name)
        if code is None:
            raise StreamingError(
                f"TensorFlow {name} tensors have no safetensors dtype; send them in a message"
            )
        # np.ascontiguousarray would make a 0-d tensor 1-d; TF's arrays are C-ordered anyway
        return (bits if bits.flags.c_contiguous else bits.copy(order="C")), code

    def from_stream(self, array: np.ndarray[Any, Any], code: str | None) -> Any:
        name = _BY_CODE.get(code) if code is not None else _BY_NUMPY.get(array.dtype)
        if name is None:
            raise StreamingError(f"cannot make a TF tensor from a {code or array.dtype} stream")
        try:
            return tensor_from_wire(name, array)
        except ValueError as exc:
            raise StreamingError(f"cannot make a TF tensor from a {code} stream: {exc}") from None


def add_tensors(
    downloader: Downloader,
    tensors: Mapping[str, Any],
    receivers: int | None = 1,
    timeout: float | None = None,
) -> str:
    """Offer TF tensors, variables (their current value) or numpy arrays for download;
    returns the ref id.

    Eager tensors are served from their own (immutable) memory, numpy arrays too: do not
    change an array in place until every receiver has pulled it (or the transaction
    expired); a variable's value is read once, here."""
    return _add_tensors(downloader, tensors, receivers, timeout)


def download_tensors(
    from_site: str,
    ref_id: str,
    per_request_timeout: float | None = None,
    progress: Progress | None = None,
    fetcher: Fetcher | None = None,
) -> OrderedDict[str, Any]:
    """Pull every tensor of ``ref_id`` from ``from_site`` as eager ``tf.Tensor`` objects, in
    offered order, one at a time (chunked, checksummed, retried; ``per_request_timeout`` per
    chunk)."""
    got = _download_tensors(
        from_site, ref_id, per_request_timeout, progress, fetcher, tensor_format="tensorflow"
    )
    return OrderedDict(got)
