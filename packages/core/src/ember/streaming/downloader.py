"""The owner side of the download service: transactions of items that receivers pull.

An owner registers tensors, files or objects in a transaction and sends only its id; each
receiver pulls the items in chunks at its own pace. An item is let go as soon as every
expected receiver has pulled it, so a model being sent shrinks tensor by tensor; the
transaction is cleaned up once every receiver has every item (or said it is done), or when
it has been idle for ``streaming.transaction_timeout``. Pulling from it afterwards is a
clear error.

A receiver in the owner's process takes a tensor straight from memory
(:meth:`Downloader.take`): the last receiver of an array that nobody else refers to any more
gets the array itself, not a copy (a *move*).
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
import weakref
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ember.common.ids import random_hex_id
from ember.config import describe_timeout
from ember.streaming import buffers
from ember.streaming.errors import StreamingError
from ember.streaming.layout import read_tensor_file, tensor_header

log = logging.getLogger(__name__)


class _Item:
    kind = "item"
    code: str | None = None  # a tensor's safetensors dtype, when numpy lacks it (BF16)

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def size(self) -> int:
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes | memoryview:
        raise NotImplementedError

    def pieces(self, offset: int, piece: int) -> Iterator[bytes | memoryview]:
        """The item's bytes from ``offset`` to its end, at most ``piece`` bytes at a time
        (what a data link sends)."""
        size = self.size
        while offset < size:
            data = self.read(offset, piece)
            if not len(data):
                raise StreamingError(f"item {self.name!r} ended at byte {offset} of {size}")
            yield data
            offset += len(data)


class TensorItem(_Item):
    """A C-contiguous array served as a safetensors stream straight from its memory."""

    kind = "tensor"

    def __init__(self, name: str, array: np.ndarray[Any, Any], code: str | None = None) -> None:
        super().__init__(name)
        self.array = array
        self.code = code
        self.header = tensor_header(name, array, code)
        # numpy's stubs give ndarray the buffer protocol (__buffer__) only on Python 3.12+
        self.data = memoryview(array.reshape(-1).view(np.uint8)) if array.nbytes else b""  # type: ignore[arg-type]

    @property
    def size(self) -> int:
        return len(self.header) + self.array.nbytes

    def read(self, offset: int, length: int) -> bytes | memoryview:
        head = len(self.header)
        start = max(0, offset - head)
        end = min(self.array.nbytes, offset + length - head)
        if offset >= head:
            return self.data[start:end]  # a view of the array itself: no copy
        out = self.header[offset : offset + length]
        if end > start:
            out += bytes(self.data[start:end])
        return out

    def pieces(self, offset: int, piece: int) -> Iterator[bytes | memoryview]:
        """The header, then views of the array itself (never copied)."""
        header, data = self.header, self.data  # held here even if the item is let go
        head = len(header)

        def views() -> Iterator[bytes | memoryview]:
            if offset < head:
                yield header[offset:]
            for start in range(max(0, offset - head), len(data), piece):
                yield data[start : start + piece]

        return views()


class _Released(_Item):
    """An item every expected receiver has pulled: its data is gone from the owner."""

    def __init__(self, item: _Item) -> None:
        super().__init__(item.name)
        self.kind = item.kind
        self._size = item.size
        self.code = item.code

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        raise StreamingError(
            f"item {self.name!r} was already pulled by every receiver it was offered to"
        )


class FileItem(_Item):
    """A file, read chunk by chunk."""

    kind = "file"

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        try:
            self._size = path.stat().st_size
        except OSError as exc:
            raise StreamingError(f"cannot offer file {path}: {exc.strerror}") from exc

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


class TensorFileItem(FileItem):
    """A tensor kept on disk as a one-tensor ``.safetensors`` file: the file *is* its
    stream, so it is served chunk by chunk from the file, never loaded whole."""

    kind = "tensor"


class ObjectItem(_Item):
    """Any FOBS-serializable object, serialized once on first request."""

    kind = "object"

    def __init__(self, name: str, obj: Any) -> None:
        super().__init__(name)
        self.obj = obj
        self._data: bytes | None = None
        self._lock = threading.Lock()

    def _bytes(self) -> bytes:
        with self._lock:
            if self._data is None:
                from ember import fobs

                self._data = fobs.dumps(self.obj)
                self.obj = None
            return self._data

    @property
    def size(self) -> int:
        return len(self._bytes())

    def read(self, offset: int, length: int) -> bytes:
        return self._bytes()[offset : offset + length]


class Transaction:
    """Items one owner offers to ``receivers`` receivers (None: any number, until idle)."""

    def __init__(self, owner: str, receivers: int | None, timeout: float) -> None:
        self.owner = owner
        self.ref_id = random_hex_id()
        self.items: dict[str, _Item] = {}
        self.receivers = receivers
        self.timeout = timeout
        self.touched = time.monotonic()
        self.finished: set[str] = set()
        self.served: dict[str, set[str]] = collections.defaultdict(set)

    def add(self, item: _Item) -> str:
        key = str(len(self.items))
        self.items[key] = item
        return key

    def add_tensor(self, name: str, array: np.ndarray[Any, Any], code: str | None = None) -> str:
        """Offer one array (C-contiguous; the caller must not change it until pulled);
        ``code``: the safetensors dtype of a tensor whose bits ``array`` holds (``BF16``)."""
        item = TensorItem(name, array, code)
        buffers.POOL.offered(item, array)  # a warm-up for the next receive waits for it
        return self.add(item)

    def manifest(self) -> list[dict[str, Any]]:
        out = []
        for key, item in self.items.items():
            entry = {"item": key, "kind": item.kind, "name": item.name, "size": item.size}
            if item.code is not None:
                entry["dtype"] = item.code
            out.append(entry)
        return out

    @property
    def complete(self) -> bool:
        return self.receivers is not None and len(self.finished) >= self.receivers


class Downloader:
    """One node's download service (the owner side)."""

    def __init__(self, owner: str, timeout: float) -> None:
        self.owner = owner
        self.timeout = timeout
        self._tx: dict[str, Transaction] = {}
        self._gone: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._reaper: threading.Thread | None = None
        self._closed = False
        # arrays (by the id of the array owning their memory) receivers here are copying
        self._copying: collections.Counter[int] = collections.Counter()

    # -- owner API -------------------------------------------------------------------------
    def open(self, receivers: int | None = 1, timeout: float | None = None) -> Transaction:
        """A new transaction; items are added to it, then :meth:`publish` makes it pullable."""
        return Transaction(self.owner, receivers, self.timeout if timeout is None else timeout)

    def publish(self, tx: Transaction) -> str:
        with self._lock:
            tx.touched = time.monotonic()
            self._tx[tx.ref_id] = tx
            self._start_reaper()
            self._cond.notify_all()
        return tx.ref_id

    def add_tensors(
        self,
        tensors: Mapping[str, np.ndarray[Any, Any]],
        receivers: int | None = 1,
        timeout: float | None = None,
    ) -> str:
        """Offer named arrays; returns the ref id receivers pass to ``download_tensors``."""
        tx = self.open(receivers, timeout)
        for name, array in tensors.items():
            tx.add_tensor(name, array if array.flags.c_contiguous else array.copy(order="C"))
        return self.publish(tx)

    def add_file(
        self, path: str | Path, receivers: int | None = 1, timeout: float | None = None
    ) -> str:
        tx = self.open(receivers, timeout)
        tx.add(FileItem(Path(path).name, Path(path)))
        return self.publish(tx)

    def add_object(self, obj: Any, receivers: int | None = 1, timeout: float | None = None) -> str:
        tx = self.open(receivers, timeout)
        tx.add(ObjectItem("object", obj))
        return self.publish(tx)

    def pending(self) -> int:
        """Transactions not yet pulled by all their receivers."""
        with self._lock:
            return len(self._tx)

    # -- serving ---------------------------------------------------------------------------
    def _get(self, ref_id: str) -> Transaction:
        tx = self._tx.get(ref_id)
        if tx is None:
            why = self._gone.get(ref_id)
            raise StreamingError(
                f"{self.owner} has no download {ref_id}: "
                + (why or "unknown id (never offered, or cleaned up long ago)")
            )
        tx.touched = time.monotonic()
        return tx

    def manifest(self, ref_id: str, receiver: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._get(ref_id).manifest()

    def has(self, ref_id: str) -> bool:
        """Whether this downloader holds ``ref_id`` (a relay forwards what it does not)."""
        with self._lock:
            return ref_id in self._tx

    def take(
        self, ref_id: str, item: str, receiver: str, copy: bool = True
    ) -> tuple[str, np.ndarray[Any, Any], bool]:
        """An offered tensor for ``receiver`` in this process, which then has it (as
        :meth:`done` with the item). Returns ``(name, array, moved)``.

        ``moved``: this was the item's last receiver and nothing else refers to the array
        any more, so the receiver gets the array itself and owns it. Otherwise it gets a
        copy, or with ``copy=False`` a read-only view. A last receiver whose array another
        receiver is still copying waits for that copy to end, then takes the array.
        """
        with self._lock:
            tx = self._get(ref_id)
            entry = tx.items.get(item)
            path = entry.path if isinstance(entry, TensorFileItem) else None
            if path is not None:
                self._served(tx, receiver, item)
        if path is not None:  # read outside the lock
            return self._read_file(path)
        return self._take_array(ref_id, item, receiver, copy)

    def _take_array(
        self, ref_id: str, item: str, receiver: str, copy: bool
    ) -> tuple[str, np.ndarray[Any, Any], bool]:
        with self._lock:
            tx = self._get(ref_id)
            entry = tx.items.get(item)
            if not isinstance(entry, TensorItem):
                raise StreamingError(
                    f"download {ref_id} of {self.owner} has no tensor {item!r}"
                    + (" left: every receiver pulled it already" if entry is not None else "")
                )
            name, array = entry.name, entry.array
            released = self._served(tx, receiver, item)
            del entry, tx
            root = _root(array)
            if released:
                deadline = time.monotonic() + self.timeout
                while self._copying[id(root)] and time.monotonic() < deadline:
                    self._cond.wait(max(0.0, deadline - time.monotonic()))
                del root
                if _exclusive(array):
                    return name, array, True
                root = _root(array)
            if not copy:
                view = array.view()
                view.flags.writeable = False
                return name, view, False
            self._copying[id(root)] += 1
        try:
            return name, array.copy(), False
        finally:
            with self._lock:
                self._copying[id(root)] -= 1
                if not self._copying[id(root)]:
                    del self._copying[id(root)]
                    self._cond.notify_all()

    @staticmethod
    def _read_file(path: Path) -> tuple[str, np.ndarray[Any, Any], bool]:
        """A tensor kept on disk, read into a fresh array of the receiver's own."""
        try:
            name, flat = read_tensor_file(path)
        except OSError as exc:
            raise StreamingError(f"cannot read tensor file {path}: {exc.strerror}") from exc
        return name, flat, True

    def _entry(self, ref_id: str, item: str) -> _Item:
        with self._lock:
            entry = self._get(ref_id).items.get(item)
        if entry is None:
            raise StreamingError(f"download {ref_id} of {self.owner} has no item {item!r}")
        return entry

    def pieces(
        self, ref_id: str, item: str, offset: int, piece: int
    ) -> tuple[int, Iterator[bytes | memoryview]]:
        """An item's size and its bytes from ``offset`` on, in pieces (see ``_Item.pieces``)."""
        entry = self._entry(ref_id, item)
        size = entry.size
        if offset < 0 or offset > size:
            raise StreamingError(f"bad offset {offset} for an item of {size} bytes")
        if isinstance(entry, _Released):
            entry.read(offset, 1)  # raises: already pulled by every receiver
        return size, entry.pieces(offset, piece)

    def chunk(
        self, ref_id: str, item: str, offset: int, length: int, receiver: str
    ) -> dict[str, Any]:
        """Bytes ``[offset, offset + length)`` of an item, with their CRC-32."""
        entry = self._entry(ref_id, item)
        size = entry.size
        if offset < 0 or length <= 0 or offset > size:
            raise StreamingError(f"bad range {offset}+{length} for an item of {size} bytes")
        data = entry.read(offset, length)
        return {"data": data, "crc": zlib.crc32(data), "size": size}

    def done(self, ref_id: str, receiver: str, item: str | None = None) -> None:
        """The receiver has ``item`` (or needs nothing more, with no item). The transaction is
        dropped once every expected receiver has every item or said it is done."""
        with self._lock:
            tx = self._tx.get(ref_id)
            if tx is None:
                return
            if item is not None:
                self._served(tx, receiver, item)
                if len(tx.served[receiver]) < len(tx.items):
                    return
            self._finish(tx, receiver)

    def _served(self, tx: Transaction, receiver: str, item: str) -> bool:
        """Record that ``receiver`` has ``item``; once every expected receiver has it, the
        transaction lets go of its data (returns True then). Called under the lock."""
        tx.served[receiver].add(item)
        entry = tx.items.get(item)
        if tx.receivers is None or entry is None or isinstance(entry, _Released):
            return False
        if sum(item in got for got in tx.served.values()) < tx.receivers:
            return False
        tx.items[item] = _Released(entry)
        if isinstance(entry, TensorItem):
            entry.data = b""
            entry.array = _NOTHING
        return True

    def _finish(self, tx: Transaction, receiver: str) -> None:
        tx.finished.add(receiver)
        if tx.complete:
            self._drop(tx, "every receiver finished it")

    def _drop(self, tx: Transaction, why: str) -> None:
        self._tx.pop(tx.ref_id, None)
        self._gone[tx.ref_id] = why
        while len(self._gone) > 10_000:
            self._gone.popitem(last=False)

    # -- expiry ----------------------------------------------------------------------------
    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(
                target=self._reap, daemon=True, name=f"ember-downloads-{self.owner}"
            )
            self._reaper.start()

    def _reap(self) -> None:
        with self._lock:
            while not self._closed:
                wait = self._expire(time.monotonic())
                self._cond.wait(None if wait is None else max(wait, 0.01))

    def expire(self, now: float | None = None) -> int:
        """Drop the transactions idle past their timeout at ``now``; returns how many.

        The expiry thread calls this on its own; tests call it with a ``now`` of their choice.
        """
        with self._lock:
            before = len(self._tx)
            self._expire(time.monotonic() if now is None else now)
            return before - len(self._tx)

    def _expire(self, now: float) -> float | None:
        for tx in list(self._tx.values()):
            if now - tx.touched >= tx.timeout:
                missing = (tx.receivers or 0) - len(tx.finished)
                why = (
                    f"it expired after {tx.timeout:g} s without a pull "
                    f"({describe_timeout(tx.timeout, 'streaming.transaction_timeout')}); "
                    f"{max(missing, 0)} receiver(s) "
                    "had not finished"
                )
                log.warning("download %s of %s: %s", tx.ref_id, self.owner, why)
                self._drop(tx, why)
        return min((tx.touched + tx.timeout - now for tx in self._tx.values()), default=None)

    def close(self) -> None:
        """Drop every transaction and stop the expiry thread."""
        with self._lock:
            self._closed = True
            for tx in list(self._tx.values()):
                self._drop(tx, "its owner shut down")
            self._cond.notify_all()


_NOTHING = np.empty(0, np.uint8)

# Whether reference counts tell that nobody else holds an array (CPython with its GIL).
_COUNTS_REFERENCES = (
    sys.implementation.name == "cpython" and getattr(sys, "_is_gil_enabled", lambda: True)()
)


def _root(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The array whose memory ``array`` views (itself if it owns it)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _exclusive(array: np.ndarray[Any, Any]) -> bool:
    """Whether the caller's one reference is the only one to ``array`` and to the arrays it
    views, which own their writable memory: then the caller may hand it on to be written."""
    if not _COUNTS_REFERENCES or not array.flags.writeable or weakref.getweakrefcount(array):
        return False
    if sys.getrefcount(array) > 3:  # the caller's, this parameter, getrefcount's argument
        return False
    view = array
    while view.base is not None:
        base = view.base
        # the view's .base, this local and getrefcount's argument
        if not isinstance(base, np.ndarray) or sys.getrefcount(base) > 3:
            return False
        if weakref.getweakrefcount(base):
            return False
        view = base
    return bool(view.flags.owndata)
