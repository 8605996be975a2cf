"""Tensors a message references but that have not been pulled yet."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ember.streaming.errors import StreamingError
from ember.streaming.fetcher import Fetcher


class LazyTensor:
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
        order: str,
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

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def fetch(self, keep: bool = True) -> np.ndarray[Any, Any]:
        """Pull the array (once; with ``keep`` it is cached for later calls)."""
        with self._lock:
            if self._value is not None:
                value = self._value
                if not keep:
                    self._value = None
                return value
            value = pull_array(
                self.fetcher, self.owner, self.ref_id, self.item, self.dtype, self.shape, self.order
            )
            if keep:
                self._value = value
            return value

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
    order: str,
) -> np.ndarray[Any, Any]:
    """Pull one referenced array and check it is what the message said."""
    _, flat = fetcher.fetch_tensor(owner, ref_id, item)
    if flat.dtype != dtype or flat.size != (int(np.prod(shape, dtype=np.int64)) if shape else 1):
        raise StreamingError(
            f"tensor {item} of {ref_id} from {owner} is {flat.dtype}{flat.shape}, the message "
            f"said {dtype}{shape}"
        )
    return flat.reshape(shape, order=order)  # type: ignore[call-overload,no-any-return]


def materialize(value: Any, keep: bool = False) -> Any:
    """``value``, with a :class:`LazyTensor` pulled."""
    return value.fetch(keep=keep) if isinstance(value, LazyTensor) else value


def release_all(params: dict[str, Any] | None) -> None:
    """Release every transaction the lazy tensors in ``params`` still hold."""
    seen: set[tuple[str, str]] = set()
    for value in (params or {}).values():
        if isinstance(value, LazyTensor) and (value.owner, value.ref_id) not in seen:
            seen.add((value.owner, value.ref_id))
            value.release()
