"""The numpy decomposers core registers: FOBS's own, plus streaming of large arrays.

An array of at least ``streaming.min_tensor_bytes`` in a message a transport encodes is
offered for download (the message carries a reference); decoding pulls it, or returns its
stand-in: a ``LazyTensor`` on an endpoint with ``lazy_tensors`` (the server), a
``RelayedRef`` with ``relay_tensors`` (a site relaying for its script's process).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.fobs.decomposer import Context
from ember.fobs.errors import FOBSError
from ember.fobs.numpy_decomposers import (
    NDArrayDecomposer,
    Order,
    array_header,
    dtype_to_wire,
    flat_in_order,
)
from ember.streaming.downloader import TensorFileItem
from ember.streaming.layout import streamable
from ember.streaming.lazy import DeferredTensor, LazyTensor, OffloadedTensor, RelayedRef, pull_array


class StreamedNDArrayDecomposer(NDArrayDecomposer):
    """``numpy.ndarray``: inline (see :class:`NDArrayDecomposer`) or, when large and a
    transport opened a download for the message, as a reference to pull."""

    def decompose(self, obj: np.ndarray[Any, Any], ctx: Context) -> Any:
        tx = ctx.props.get("stream_tx")
        if tx is not None and obj.nbytes >= ctx.props["stream_min_bytes"] and streamable(obj.dtype):
            # large: offered for download; the message carries only a reference
            order, flat = flat_in_order(obj)
            item = tx.add_tensor(f"t{len(tx.items)}", flat.reshape(-1))
            return {
                "dtype": dtype_to_wire(obj.dtype),
                "shape": list(obj.shape),
                "order": order,
                "ref": [tx.owner, tx.ref_id, item],
            }
        return super().decompose(obj, ctx)

    def recompose(self, data: Any, ctx: Context) -> Any:
        """An ``ndarray``, or for a streamed one its stand-in: a ``RelayedRef``
        (``relay_tensors``) or a ``LazyTensor`` (``lazy_tensors``)."""
        if not (isinstance(data, dict) and "ref" in data):
            return super().recompose(data, ctx)
        dtype, shape, order = array_header(data)
        ref = data["ref"]
        if ctx.props.get("relay_tensors"):
            return RelayedRef(
                {"dtype": data["dtype"], "shape": list(shape), "order": order, "ref": ref}
            )
        return _referenced(ref, dtype, shape, order, ctx)


class StreamedMemmapDecomposer(StreamedNDArrayDecomposer):
    """``numpy.memmap``: sent as its data; decodes as a plain ``ndarray``."""

    def supported_type(self) -> type:
        return np.memmap


class DeferredTensorDecomposer(StreamedNDArrayDecomposer):
    """A not-yet-fetched array being passed on (cross-site evaluation relays site models):
    it is fetched, then sent as an array, and decodes as one."""

    match_subclasses = True

    def supported_type(self) -> type:
        return DeferredTensor

    def decompose(self, obj: Any, ctx: Context) -> Any:
        reference = obj.as_reference()
        if reference is not None:
            return reference
        tx = ctx.props.get("stream_tx")
        if (
            isinstance(obj, OffloadedTensor)
            and tx is not None
            and obj.nbytes >= ctx.props["stream_min_bytes"]
        ):
            # served from its file, chunk by chunk: the sender holds none of it
            item = tx.add(TensorFileItem(obj.path.stem, obj.path))
            return {
                "dtype": dtype_to_wire(obj.dtype),
                "shape": list(obj.shape),
                "order": obj.order,
                "ref": [tx.owner, tx.ref_id, item],
            }
        return super().decompose(obj.fetch(keep=True), ctx)


def _referenced(
    ref: Any, dtype: np.dtype[Any], shape: tuple[int, ...], order: Order, ctx: Context
) -> Any:
    """An array the sender offered for download: pulled now, or lazily (the server)."""
    if not (isinstance(ref, list) and len(ref) == 3 and all(isinstance(r, str) for r in ref)):
        raise FOBSError("malformed ndarray reference")
    fetcher = ctx.props.get("fetcher")
    if fetcher is None:
        raise FOBSError(
            "the message references a streamed array, but it was decoded without a "
            "download service (decode it through a transport, or send with streaming off)"
        )
    owner, ref_id, item = ref
    if ctx.props.get("lazy_tensors"):
        return LazyTensor(fetcher, owner, ref_id, item, dtype, shape, order)
    return pull_array(fetcher, owner, ref_id, item, dtype, shape, order)
