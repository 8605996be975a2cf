"""Tensors a message references but that have not been pulled yet."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ember.fobs.numpy_decomposers import Order, dtype_from_wire, flat_in_order
from ember.streaming.errors import StreamingError
from ember.streaming.fetcher import Fetcher
from ember.streaming.layout import (
    read_tensor_file,
    streamable,
    write_tensor_file,
)


class DeferredTensor:
    """An array a message refers to but that is not in memory yet."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def fetch(self, keep: bool = True, writable: bool = True) -> np.ndarray[Any, Any]:
        """The array (with ``keep``, cached for later calls; ``writable=False``: read-only
        is enough)."""
        raise NotImplementedError

    def take(self) -> tuple[np.ndarray[Any, Any], bool]:
        """The array, for a caller that needs it once: ``(array, owned)``; when ``owned``
        nobody else sees it, so the caller may change it in place."""
        return self.fetch(keep=False, writable=False), False

    def release(self) -> None:
        """Nothing more will be fetched."""

    def as_reference(self) -> dict[str, Any] | None:
        """The reference to send on instead of the data (a relay), or None to send data."""
        return None


class RelayedRef(DeferredTensor):
    """A reference passing through a node that does not need the data (a site relaying
    between the server and its script's process): sent on as the same reference, so the
    receiver pulls from the owner through the relay, chunk by chunk."""

    def __init__(self, wire: dict[str, Any]) -> None:
        self.wire = wire

    def fetch(self, keep: bool = True, writable: bool = True) -> np.ndarray[Any, Any]:
        raise StreamingError("a relayed tensor reference is not pulled by the relay")

    def as_reference(self) -> dict[str, Any]:
        return self.wire


class OffloadedTensor(DeferredTensor):
    """A tensor kept in a one-tensor safetensors file until it is needed: a result the
    server received, or a global model it sends (:func:`offload_arrays`)."""

    def __init__(
        self, path: Path, dtype: np.dtype[Any], shape: tuple[int, ...], order: Order
    ) -> None:
        self.path = path
        self.dtype = dtype
        self.shape = shape
        self.order = order

    def fetch(self, keep: bool = True, writable: bool = True) -> np.ndarray[Any, Any]:
        _, flat = read_tensor_file(self.path)
        if not keep:
            self.release()
        return flat.reshape(self.shape, order=self.order)

    def take(self) -> tuple[np.ndarray[Any, Any], bool]:
        return self.fetch(keep=False), True  # read from its file into a fresh array

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


class LazyTensor(DeferredTensor):
    """An array still held by its owner; :meth:`fetch` pulls it.

    The server decodes results into these, so a result waiting for aggregation costs a few
    bytes here while its data stays at the site, and the aggregator pulls one tensor at a time.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        owner: str,
        ref_id: str,
        item: str,
        dtype: np.dtype[Any],
        shape: tuple[int, ...],
        order: Order,
    ) -> None:
        self.fetcher = fetcher
        self.owner = owner
        self.ref_id = ref_id
        self.item = item
        self.dtype = dtype
        self.shape = shape
        self.order = order
        self._value: np.ndarray[Any, Any] | None = None
        self._lock = threading.Lock()

    def fetch(self, keep: bool = True, writable: bool = True) -> np.ndarray[Any, Any]:
        """Pull the array (once; with ``keep`` it is cached for later calls). With
        ``writable=False`` a read-only array will do, which spares a copy in process."""
        with self._lock:
            if self._value is not None:
                value = self._value
                if not keep:
                    self._value = None
                return value
            value = pull_array(
                self.fetcher,
                self.owner,
                self.ref_id,
                self.item,
                self.dtype,
                self.shape,
                self.order,
                copy=writable or keep,
            )
            if keep:
                self._value = value
            return value

    def take(self) -> tuple[np.ndarray[Any, Any], bool]:
        with self._lock:
            if self._value is not None:  # fetched with keep: others may hold it
                value, self._value = self._value, None
                return value, False
        # a pull gives a fresh array, and an owner in this process a read-only view unless
        # it moved the array itself to us: writable means ours
        value = self.fetch(keep=False, writable=False)
        return value, bool(value.flags.writeable)

    def release(self) -> None:
        """Tell the owner this tensor's message needs nothing more."""
        self.fetcher.release(self.owner, self.ref_id)

    def __repr__(self) -> str:
        return f"LazyTensor({self.owner}:{self.ref_id}/{self.item}, {self.dtype}, {self.shape})"


def pull_array(
    fetcher: Fetcher,
    owner: str,
    ref_id: str,
    item: str,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    order: Order,
    copy: bool = True,
) -> np.ndarray[Any, Any]:
    """Pull one referenced array and check it is what the message said."""
    _, flat = fetcher.fetch_tensor(owner, ref_id, item, copy=copy)
    if flat.dtype != dtype or flat.size != (int(np.prod(shape, dtype=np.int64)) if shape else 1):
        raise StreamingError(
            f"tensor {item} of {ref_id} from {owner} is {flat.dtype}{flat.shape}, the message "
            f"said {dtype}{shape}"
        )
    return flat.reshape(shape, order=order)


def release_all(params: dict[str, Any] | None) -> None:
    """Release what the deferred tensors in ``params`` still hold (transactions, files)."""
    seen: set[tuple[str, str]] = set()
    for value in (params or {}).values():
        if isinstance(value, LazyTensor):
            if (value.owner, value.ref_id) not in seen:
                seen.add((value.owner, value.ref_id))
                value.release()
        elif isinstance(value, DeferredTensor):
            value.release()


def resolve_deferred(value: Any) -> Any:
    """``value`` (dicts, lists and tuples of it) with every deferred tensor pulled now."""
    if isinstance(value, DeferredTensor):
        return value.fetch(keep=False)
    if isinstance(value, dict):
        return {k: resolve_deferred(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(resolve_deferred(v) for v in value)
    return value


def offload(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Pull every lazy tensor of ``params`` into a safetensors file under ``folder`` now."""
    out: dict[str, Any] = {}
    for index, (key, value) in enumerate(params.items()):
        if isinstance(value, LazyTensor):
            path = value.fetcher.fetch_to_file(
                value.owner, value.ref_id, value.item, folder / f"{index}.safetensors"
            )
            out[key] = OffloadedTensor(path, value.dtype, value.shape, value.order)
        else:
            out[key] = value
    return out


def offload_arrays(params: dict[str, Any], folder: Path, min_bytes: int) -> dict[str, Any]:
    """``params`` with every numpy array of at least ``min_bytes`` written to a one-tensor
    safetensors file under ``folder`` and replaced by an :class:`OffloadedTensor`; sent in
    a message, such a tensor is served from its file (the caller may then drop the array)."""

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for index, (key, value) in enumerate(params.items()):
        if (
            isinstance(value, np.ndarray)
            and value.nbytes >= min_bytes
            and value.nbytes > 0
            and streamable(value.dtype)
        ):
            order, flat = flat_in_order(value)
            path = folder / f"{index}.safetensors"
            write_tensor_file(path, str(key), flat.reshape(-1))
            out[key] = OffloadedTensor(path, value.dtype, value.shape, order)
        else:
            out[key] = value
    return out


def resolve_relayed(value: Any, fetcher: Fetcher) -> Any:
    """``value`` with every :class:`RelayedRef` inside it pulled (in the calling thread).

    A channel's reader thread decodes references without pulling them (it must stay free to
    read the replies the pulls wait for); the thread that asked pulls them here.
    """
    if isinstance(value, RelayedRef):
        wire = value.wire
        owner, ref_id, item = wire["ref"]
        return pull_array(
            fetcher,
            owner,
            ref_id,
            item,
            dtype_from_wire(wire["dtype"]),
            tuple(wire["shape"]),
            wire["order"],
        )
    resolve = getattr(value, "resolve_relayed", None)
    if callable(resolve):  # a framework's relayed type (ember_pt's RelayedTensor)
        return resolve(fetcher)
    if isinstance(value, dict):
        return {k: resolve_relayed(v, fetcher) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(resolve_relayed(v, fetcher) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            setattr(value, f.name, resolve_relayed(getattr(value, f.name), fetcher))
    return value
