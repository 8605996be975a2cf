"""The owner side of the download service: transactions of items that receivers pull.

An owner registers tensors, files or objects in a transaction and sends only its id; each
receiver pulls the items in chunks at its own pace. A transaction is cleaned up as soon as
every expected receiver has pulled every item (or said it is done), or when it has been
idle for ``streaming.transaction_timeout``; pulling from it afterwards is a clear error.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ember.streaming.errors import StreamingError
from ember.streaming.layout import tensor_header

log = logging.getLogger(__name__)


class _Item:
    kind = "item"

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def size(self) -> int:
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes | memoryview:
        raise NotImplementedError


class TensorItem(_Item):
    """A C-contiguous array served as a safetensors stream straight from its memory."""

    kind = "tensor"

    def __init__(self, name: str, array: np.ndarray[Any, Any], code: str | None = None) -> None:
        super().__init__(name)
        self.array = array
        self.code = code
        self.header = tensor_header(name, array, code)
        self.data = memoryview(array.reshape(-1).view(np.uint8)) if array.nbytes else b""

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
        self.ref_id = uuid.uuid4().hex
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
        return self.add(TensorItem(name, array, code))

    def manifest(self) -> list[dict[str, Any]]:
        out = []
        for key, item in self.items.items():
            entry = {"item": key, "kind": item.kind, "name": item.name, "size": item.size}
            if isinstance(item, TensorItem) and item.code is not None:
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

    def tensor(self, ref_id: str, item: str) -> tuple[str, np.ndarray[Any, Any]]:
        """An offered tensor itself, for a receiver in this process."""
        with self._lock:
            entry = self._get(ref_id).items.get(item)
        if not isinstance(entry, TensorItem):
            raise StreamingError(f"download {ref_id} of {self.owner} has no tensor {item!r}")
        return entry.name, entry.array

    def chunk(
        self, ref_id: str, item: str, offset: int, length: int, receiver: str
    ) -> dict[str, Any]:
        """Bytes ``[offset, offset + length)`` of an item, with their CRC-32."""
        with self._lock:
            tx = self._get(ref_id)
            entry = tx.items.get(item)
            if entry is None:
                raise StreamingError(f"download {ref_id} of {self.owner} has no item {item!r}")
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
                served = tx.served[receiver]
                served.add(item)
                if len(served) < len(tx.items):
                    return
            self._finish(tx, receiver)

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
                    f"(streaming.transaction_timeout); {max(missing, 0)} receiver(s) "
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
