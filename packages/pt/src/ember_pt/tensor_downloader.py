"""Streaming torch tensors with the download service: one safetensors stream per tensor.

The low-level API for code that moves a state_dict itself (messages do it transparently):

    ref_id = add_tensors(downloader, model.state_dict())          # the owner
    state_dict = download_tensors("site-1", ref_id, per_request_timeout=30)  # a receiver

Each tensor is served straight from its CPU memory (a GPU tensor is copied to the CPU once)
as a single-tensor safetensors stream with its real dtype (``BF16``, ``F8_E4M3``...), so a
receiver may also write it to a ``.safetensors`` file that ``safetensors.torch`` loads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ember.streaming import Downloader, Fetcher, Progress, StreamingError
from ember.streaming import add_tensors as _add_tensors
from ember.streaming import download_tensors as _download_tensors
from ember_pt.convert import DTYPES, tensor_from_wire, tensor_to_wire

# torch dtype name -> safetensors dtype code (complex dtypes have none)
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


class TorchTensorAdapter:
    """The ``pytorch`` tensor adapter (registered by ember-pt's plugin)."""

    def supports(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor)

    def to_stream(self, value: Any) -> tuple[np.ndarray[Any, Any], str | None]:
        name, bits = tensor_to_wire(value)
        code = SAFETENSORS_CODES.get(name)
        if code is None:
            raise StreamingError(
                f"torch {name} tensors have no safetensors dtype; send them in a message"
            )
        # np.ascontiguousarray would make a 0-d tensor 1-d
        return bits if bits.flags.c_contiguous else np.ascontiguousarray(bits), code

    def from_stream(self, array: np.ndarray[Any, Any], code: str | None) -> torch.Tensor:
        name = _BY_CODE.get(code) if code is not None else _BY_NUMPY.get(array.dtype)
        if name is None:
            raise StreamingError(f"cannot make a torch tensor from a {code or array.dtype} stream")
        return tensor_from_wire(name, array)


def add_tensors(
    downloader: Downloader,
    state_dict: Mapping[str, Any],
    receivers: int | None = 1,
    timeout: float | None = None,
) -> str:
    """Offer a state_dict's tensors (or numpy arrays) for download; returns the ref id.

    The tensors are served from their own memory: do not change them in place until every
    receiver has pulled them (or the transaction expired)."""
    return _add_tensors(downloader, state_dict, receivers, timeout)


def download_tensors(
    from_site: str,
    ref_id: str,
    per_request_timeout: float | None = None,
    progress: Progress | None = None,
    fetcher: Fetcher | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """Pull every tensor of ``ref_id`` from ``from_site`` as CPU tensors, in offered order,
    one at a time (chunked, checksummed, retried; ``per_request_timeout`` per chunk)."""
    got = _download_tensors(
        from_site, ref_id, per_request_timeout, progress, fetcher, tensor_format="pytorch"
    )
    return OrderedDict(got)
