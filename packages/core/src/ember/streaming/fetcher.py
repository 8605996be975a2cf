"""The receiver side of the download service: pull items chunk by chunk, check, retry."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from ember.config import describe_setting, describe_timeout
from ember.streaming import buffers
from ember.streaming.downloader import Downloader
from ember.streaming.errors import LinkBroken, StreamingError
from ember.streaming.layout import MAX_HEADER_BYTES, parse_header

Request = Callable[[str, str, Any, float | None], Any]
"""``request(target, topic, payload, timeout) -> reply`` on the node's transport (``timeout``
None: wait until the reply comes or the connection is lost)."""
Sink = Callable[[int, bytes | memoryview], None]
"""``sink(offset, data)``: where the bytes of an item go as they arrive."""
Progress = Callable[[str, int, int], None]
"""``progress(item name, bytes received, item size)``."""

MANIFEST = "stream.manifest"
CHUNK = "stream.chunk"
DONE = "stream.done"

log = logging.getLogger(__name__)


class LinkConnection(Protocol):
    """One connection of a direct data link (:mod:`ember.net.datalink`), used by one thread
    at a time; both methods raise :class:`LinkBroken` when the connection fails."""

    def call(self, topic: str, payload: dict[str, Any]) -> Any:
        """The owner's reply to a small download request (``MANIFEST``, ``DONE``)."""

    def read(
        self,
        ref_id: str,
        item: str,
        offset: int,
        sink: Callable[[int, memoryview], None],
        progress: Callable[[int, int], None] | None = None,
        length: int | None = None,
    ) -> int:
        """Stream an item from ``offset`` to its end (or ``length`` bytes of it) into
        ``sink``; returns the item's size."""


_Conn = TypeVar("_Conn", bound=LinkConnection)
_T = TypeVar("_T")


class Links(Protocol[_Conn]):
    """Direct data links to owners, beside the request path (None: none to ``owner``);
    ``release`` takes back the connections of this ``acquire``."""

    def acquire(self, owner: str) -> _Conn | None: ...

    def release(self, conn: _Conn, ok: bool) -> None: ...


class Fetcher:
    """Pulls what other nodes offer, in ``chunk_size`` pieces, each checked by CRC-32.

    A failed or corrupt chunk is requested again, up to ``max_retries`` times, from the same
    offset: a dropped connection resumes where it stopped. An owner that says the transaction
    is gone (expired, unknown) fails at once with its reason.

    With ``links`` (direct data links, set by the transport), an item is streamed whole over
    a free link connection to its owner; if the link fails, the pull goes on through the
    request path from where the link stopped.
    """

    links: Links[Any] | None = None

    def __init__(
        self,
        node: str,
        request: Request,
        chunk_size: int,
        per_request_timeout: float,
        max_retries: int,
        local: Callable[[str], Downloader | None] | None = None,
        in_flight: int = 1,
    ) -> None:
        self.node = node
        self.request = request
        self.in_flight = max(1, in_flight)
        self._pool: ThreadPoolExecutor | None = None
        self._stats: dict[str, list[Any]] = {}
        self._stats_lock = threading.Lock()
        self.local = local
        self.chunk_size = chunk_size
        self.per_request_timeout = per_request_timeout
        self.max_retries = max_retries

    def _call(self, owner: str, topic: str, payload: dict[str, Any], timeout: float) -> Any:
        reply = self._linked_call(owner, topic, payload)
        if reply is _NO_LINK:
            reply = self.request(owner, topic, payload, timeout)
        if isinstance(reply, dict) and "error" in reply:
            raise StreamingError(str(reply["error"]))
        return reply

    def manifest(
        self, owner: str, ref_id: str, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        return self._retry(
            owner, MANIFEST, {"ref": ref_id}, timeout, lambda r: r if isinstance(r, list) else None
        )

    def _linked_call(self, owner: str, topic: str, payload: dict[str, Any]) -> Any:
        links = self.links
        conn: LinkConnection | None = links.acquire(owner) if links is not None else None
        if links is None or conn is None:
            return _NO_LINK
        ok = False
        try:
            reply = conn.call(topic, payload)
            ok = True
            return reply
        except LinkBroken as exc:
            log.info("%s: data link to %s failed (%s); using the hub", self.node, owner, exc)
            return _NO_LINK
        finally:
            links.release(conn, ok)

    def _linked_read(
        self,
        owner: str,
        ref_id: str,
        item: str,
        sink: Sink,
        name: str,
        progress: Progress | None,
    ) -> tuple[int, int | None]:
        """Stream an item over a data link: ``(bytes delivered, item size or None)``."""
        links = self.links
        conn: LinkConnection | None = links.acquire(owner) if links is not None else None
        if links is None or conn is None:
            return 0, None
        report = None
        if progress is not None:

            def report(offset: int, size: int) -> None:
                progress(name or item, offset, size)

        ok = False
        try:
            size = conn.read(ref_id, item, 0, sink, report)
            ok = True
            return size, size
        except StreamingError:
            ok = True  # the owner answered: the link is fine
            raise
        except LinkBroken as exc:
            log.info(
                "%s: data link to %s broke at byte %d of %s (%s); going on through the hub",
                self.node,
                owner,
                exc.offset,
                item,
                exc,
            )
            return exc.offset, exc.size
        finally:
            links.release(conn, ok)

    def _retry(
        self,
        owner: str,
        topic: str,
        payload: dict[str, Any],
        timeout: float | None,
        check: Callable[[Any], _T | None],
    ) -> _T:
        timeout = self.per_request_timeout if timeout is None else timeout
        problems: list[str] = []
        for _ in range(self.max_retries + 1):
            try:
                result = check(self._call(owner, topic, payload, timeout))
            except StreamingError:
                raise
            except Exception as exc:  # a dropped connection, a timeout, a broken reply
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            if result is not None:
                return result
            problems.append("corrupt or malformed reply")
        raise StreamingError(
            f"{self.node} gave up on {topic} {payload.get('ref')} from {owner} after "
            f"{self.max_retries + 1} attempts "
            f"({describe_setting('streaming.max_retries', self.max_retries)}; a request's "
            f"limit: {describe_timeout(timeout, 'streaming.per_request_timeout')}): "
            + "; ".join(problems[-3:])
        )

    def _chunk(
        self, owner: str, ref_id: str, item: str, offset: int, length: int, timeout: float | None
    ) -> tuple[bytes | memoryview, int]:
        def check(reply: Any) -> tuple[bytes | memoryview, int] | None:
            if not isinstance(reply, dict):
                return None
            data, crc, size = reply.get("data"), reply.get("crc"), reply.get("size")
            if (
                not isinstance(data, bytes | memoryview)
                or zlib.crc32(data) != crc
                or not isinstance(size, int)
            ):
                return None
            if not data and offset < size:
                return None
            return data, size

        payload = {"ref": ref_id, "item": item, "offset": offset, "length": length}
        return self._retry(owner, CHUNK, payload, timeout, check)

    def read_item(
        self,
        owner: str,
        ref_id: str,
        item: str,
        sink: Sink,
        name: str = "",
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> int:
        """Pull a whole item, giving each chunk to ``sink(offset, data)``; returns its size."""
        started = time.perf_counter()
        offset, known = self._linked_read(owner, ref_id, item, sink, name, progress)
        via_link = offset
        if known is None or offset < known:
            data, size = self._chunk(owner, ref_id, item, offset, self.chunk_size, timeout)
            sink(offset, data)
            offset += len(data)
            if progress is not None:
                progress(name or item, offset, size)
        else:
            size = known
        if offset < size and self.in_flight > 1:
            offset = self._pipelined(
                owner, ref_id, item, offset, size, sink, timeout, name, progress
            )
        while offset < size:
            data, size = self._chunk(owner, ref_id, item, offset, self.chunk_size, timeout)
            sink(offset, data)
            offset += len(data)
            if progress is not None:
                progress(name or item, offset, size)
        self._count(owner, ref_id, 1, offset, time.perf_counter() - started, via_link)
        with contextlib.suppress(Exception):  # the owner's expiry cleans up if this is lost
            self._call(owner, DONE, {"ref": ref_id, "item": item}, self.per_request_timeout)
        return offset

    def _count(
        self, owner: str, ref_id: str, items: int, nbytes: int, seconds: float, via_link: int
    ) -> None:
        """Add a pull to :meth:`transfer_stats`."""
        with self._stats_lock:
            pulled = self._stats.setdefault(owner, [0, 0, 0.0, 0, {}])
            pulled[0] += items
            pulled[1] += nbytes
            pulled[2] += seconds
            pulled[3] += via_link
            per_ref = pulled[4].setdefault(ref_id, [0, 0.0])
            per_ref[0] += nbytes
            per_ref[1] += seconds
            if len(pulled[4]) > _REFS_KEPT:
                del pulled[4][next(iter(pulled[4]))]

    def relay(self, owner: str, topic: str, payload: dict[str, Any]) -> Any:
        """The owner's reply to a download request a script's process makes through this
        node (a site relaying for ``launch_external_process``): a chunk comes over a data
        link when there is one (with the CRC-32 the script checks), else as it is asked."""
        started = time.perf_counter()
        if topic == CHUNK:
            reply = self._linked_chunk(owner, payload)
        elif topic in (MANIFEST, DONE):
            reply = self._linked_call(owner, topic, payload)
        else:
            reply = _NO_LINK
        via_link = reply is not _NO_LINK
        if not via_link:
            reply = self.request(owner, topic, payload, None)
        data = reply.get("data") if topic == CHUNK and isinstance(reply, dict) else None
        if isinstance(data, bytes | memoryview) and isinstance(reply.get("size"), int):
            end = int(payload.get("offset", 0)) + len(data)
            whole = int(bool(data) and end >= reply["size"])  # the chunk that ends an item
            seconds = time.perf_counter() - started
            ref_id = str(payload.get("ref"))
            self._count(owner, ref_id, whole, len(data), seconds, len(data) if via_link else 0)
        return reply

    def _linked_chunk(self, owner: str, payload: dict[str, Any]) -> Any:
        ref_id, item = payload.get("ref"), payload.get("item")
        offset, length = payload.get("offset"), payload.get("length")
        if not (
            isinstance(ref_id, str)
            and isinstance(item, str)
            and isinstance(offset, int)
            and isinstance(length, int)
            and offset >= 0
            and length > 0
        ):
            return _NO_LINK  # the owner answers what is malformed
        links = self.links
        conn: LinkConnection | None = links.acquire(owner) if links is not None else None
        if links is None or conn is None:
            return _NO_LINK
        sink = _ChunkSink(offset, length)
        ok = False
        try:
            size = conn.read(ref_id, item, offset, sink, length=length)
            ok = True
        except StreamingError as exc:
            ok = True  # the owner answered: the link is fine
            return {"error": str(exc)}
        except LinkBroken as exc:
            log.info("%s: data link to %s failed (%s); using the hub", self.node, owner, exc)
            return _NO_LINK
        finally:
            links.release(conn, ok)
        data = sink.data(size)
        return {"data": data, "crc": zlib.crc32(data), "size": size}

    def _pipelined(
        self,
        owner: str,
        ref_id: str,
        item: str,
        offset: int,
        size: int,
        sink: Sink,
        timeout: float | None,
        name: str,
        progress: Progress | None,
    ) -> int:
        """Pull ``[offset, size)`` with up to ``in_flight`` chunk requests outstanding,
        handing chunks to ``sink`` in order; returns how far it got (a short chunk stops the
        pipeline and the caller goes on one chunk at a time)."""
        if self._pool is None:
            with self._stats_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=4 * self.in_flight, thread_name_prefix=f"ember-pull-{self.node}"
                    )
        pool = self._pool
        pending: collections.deque[tuple[int, int, Future[tuple[bytes | memoryview, int]]]] = (
            collections.deque()
        )
        next_offset = offset
        try:
            while offset < size:
                while len(pending) < self.in_flight and next_offset < size:
                    length = min(self.chunk_size, size - next_offset)
                    future = pool.submit(
                        self._chunk, owner, ref_id, item, next_offset, length, timeout
                    )
                    pending.append((next_offset, length, future))
                    next_offset += length
                at, length, future = pending.popleft()
                data, _ = future.result()
                if len(data) != length:
                    return offset  # not what was asked: finish one chunk at a time
                sink(at, data)
                offset = at + length
                if progress is not None:
                    progress(name or item, offset, size)
        finally:
            for _, _, future in pending:
                future.cancel()
        return offset

    def transfer_stats(self) -> dict[str, dict[str, Any]]:
        """What this node pulled, by owner: items, bytes (``link_bytes`` of them over a data
        link), seconds spent pulling (summed over items: concurrent pulls add up), and
        ``by_ref``: ``[bytes, seconds]`` of each download (message) in the order they began,
        the last few hundred."""
        with self._stats_lock:
            return {
                owner: {
                    "items": n,
                    "bytes": b,
                    "seconds": round(t, 6),
                    "link_bytes": k,
                    "by_ref": [[nb, round(sec, 6)] for nb, sec in refs.values()],
                }
                for owner, (n, b, t, k, refs) in self._stats.items()
            }

    def fetch_tensor(
        self,
        owner: str,
        ref_id: str,
        item: str,
        progress: Progress | None = None,
        timeout: float | None = None,
        copy: bool = True,
    ) -> tuple[str, np.ndarray[Any, Any]]:
        """One tensor, pulled straight into a fresh writable array.

        When the owner lives in this process (``local``), the tensor is taken from it
        directly: the array itself when this is its last receiver and nothing else refers to
        it (moved, writable), else a copy, or with ``copy=False`` a read-only view (what an
        aggregator that only reads it needs). Otherwise it is pulled in checked chunks. So
        with ``copy=False`` a writable result is the caller's own.
        """
        array: np.ndarray[Any, Any] | None
        owner_downloader = self.local(owner) if self.local is not None else None
        if owner_downloader is not None and owner_downloader.has(ref_id):
            name, array, _ = owner_downloader.take(ref_id, item, self.node, copy)
            return name, array
        sink = _TensorSink()
        size = self.read_item(owner, ref_id, item, sink, progress=progress, timeout=timeout)
        array = sink.array
        if array is None or size != sink.start + array.nbytes:
            raise StreamingError(f"tensor stream {item} of {ref_id} from {owner} is truncated")
        return sink.name, array

    def iter_tensors(
        self,
        owner: str,
        ref_id: str,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
        """The offered tensors one at a time (only one is held here at once)."""
        for entry in self.manifest(owner, ref_id, timeout):
            if entry["kind"] != "tensor":
                raise StreamingError(f"item {entry['name']!r} of {ref_id} is a {entry['kind']}")
            yield self.fetch_tensor(owner, ref_id, entry["item"], progress, timeout)

    def download_tensors(
        self,
        owner: str,
        ref_id: str,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray[Any, Any]]:
        return dict(self.iter_tensors(owner, ref_id, progress, timeout))

    def fetch_to_file(
        self,
        owner: str,
        ref_id: str,
        item: str,
        dest: Path,
        timeout: float | None = None,
        name: str = "",
        progress: Progress | None = None,
    ) -> Path:
        """One item's stream written to ``dest``, atomically: a partial file never appears
        (a tensor's stream is a .safetensors file)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        with open(tmp, "wb") as f:

            def sink(offset: int, data: bytes | memoryview) -> None:
                f.seek(offset)
                f.write(data)

            self.read_item(owner, ref_id, item, sink, name, progress, timeout)
        os.replace(tmp, dest)
        return dest

    def download_file(
        self,
        owner: str,
        ref_id: str,
        dest: str | Path,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> Path:
        """The offered file, written to ``dest`` (atomically: a partial file never appears)."""
        (entry,) = self.manifest(owner, ref_id, timeout)
        return self.fetch_to_file(
            owner, ref_id, entry["item"], Path(dest), timeout, entry["name"], progress
        )

    def download_object(self, owner: str, ref_id: str, timeout: float | None = None) -> Any:
        from ember import fobs

        (entry,) = self.manifest(owner, ref_id, timeout)
        buf = bytearray(entry["size"])

        def sink(offset: int, data: bytes | memoryview) -> None:
            buf[offset : offset + len(data)] = data

        self.read_item(owner, ref_id, entry["item"], sink, timeout=timeout)
        return fobs.loads(buf)

    def release(self, owner: str, ref_id: str) -> None:
        """Tell the owner this node needs nothing more from ``ref_id``."""
        with contextlib.suppress(Exception):  # the owner cleans up on its own timeout anyway
            self._call(owner, DONE, {"ref": ref_id}, self.per_request_timeout)


class _TensorSink:
    """A tensor's safetensors stream written into a fresh array: the header is parsed from
    the first bytes, the rest goes into the array's memory."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.name = ""
        self.array: np.ndarray[Any, Any] | None = None
        self.view = memoryview(b"")
        self.start = 0

    def __call__(self, offset: int, data: bytes | memoryview) -> None:
        if self.array is None:
            self.head += data
            head = self.head
            if len(head) < 8:
                return
            (hlen,) = struct.unpack_from("<Q", head)
            if hlen > MAX_HEADER_BYTES:
                raise StreamingError(f"tensor header of {hlen} bytes is not plausible")
            if len(head) < 8 + hlen:
                return
            self.name, dtype, shape, _ = parse_header(bytes(head[8 : 8 + hlen]))
            self.array = buffers.empty(shape, dtype)
            # numpy's stubs give ndarray the buffer protocol (__buffer__) only on Python 3.12+
            self.view = memoryview(self.array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
            self.start = 8 + hlen
            data, offset = bytes(head[8 + hlen :]), 8 + hlen
            self.head = bytearray()
        pos = offset - self.start
        if pos + len(data) > len(self.view):
            raise StreamingError("tensor stream is longer than its header says")
        self.view[pos : pos + len(data)] = data

    def buffer(self, offset: int) -> memoryview | None:
        """Where the stream's bytes from ``offset`` on go, once the header is known (a data
        link receives them straight into it)."""
        pos = offset - self.start
        if self.array is None or not 0 <= pos < len(self.view):
            return None
        return self.view[pos:]


class _ChunkSink:
    """Up to ``length`` bytes of an item from ``start``, received straight into one buffer."""

    def __init__(self, start: int, length: int) -> None:
        self.start = start
        self.buf = bytearray(length)
        self.view = memoryview(self.buf)

    def buffer(self, offset: int) -> memoryview:
        return self.view[offset - self.start :]

    def __call__(self, offset: int, data: memoryview) -> None:  # (buffer covers it all)
        self.view[offset - self.start : offset - self.start + len(data)] = data

    def data(self, size: int) -> bytes | memoryview:
        """What arrived of an item of ``size`` bytes."""
        return self.view[: max(0, min(len(self.buf), size - self.start))]


_NO_LINK = object()
_REFS_KEPT = 500  # downloads per owner whose bytes and seconds transfer_stats keeps
