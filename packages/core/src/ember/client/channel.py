"""Requests in both directions over one local socket (a site and its script's process).

Each frame is an 8-byte length and a FOBS frame: ``{"id", "op", "payload"}`` asks,
``{"re", "ok"}`` or ``{"re", "error"}`` answers. A reader thread takes every frame; requests
from the peer run on a small pool so that a long poll never blocks the downloads that run
beside it. Each side chooses how arrays are encoded (offered for download, or relayed as
references) and decoded.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ember import fobs
from ember.client.ipc import ConnectionClosed, recv_frame, write_frame
from ember.config import describe_timeout
from ember.errors import EmberError

Handler = Callable[[str, Any], Any]


class ChannelError(EmberError, RuntimeError):
    """The peer answered a request with an error."""


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Any = None
        self.error: BaseException | None = None


class Channel:
    """Duplex request/reply over a connected socket."""

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        max_frame: int,
        encode: Callable[[], tuple[fobs.Context, Callable[[], None]]] | None = None,
        decode: Callable[[], fobs.Context] | None = None,
        name: str = "channel",
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.sock = sock
        # small requests must not wait for Nagle's algorithm (40 ms per round trip)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.handler = handler
        self.max_frame = max_frame
        self._encode = encode
        self._decode = decode
        self._on_close = on_close
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{name}-req")
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()

    def _send(self, frame: dict[str, Any]) -> None:
        if self._encode is None:
            ctx, publish = fobs.Context(), None
        else:
            ctx, publish = self._encode()
        data = fobs.dumps(frame, ctx=ctx)
        if publish is not None:
            publish()
        with self._send_lock:
            write_frame(self.sock, data)

    def request(self, op: str, payload: Any, timeout: float | None = None) -> Any:
        """Ask the peer; returns its answer, raises :class:`ChannelError` with its error."""
        pending = _Pending()
        with self._lock:
            if self._closed:
                raise ConnectionClosed("the channel is closed")
            request_id = next(self._ids)
            self._pending[request_id] = pending
        try:
            self._send({"id": request_id, "op": op, "payload": payload})
            if not pending.done.wait(timeout):
                raise TimeoutError(f"no answer to {op!r} within {describe_timeout(timeout)}")
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.reply

    def _read(self) -> None:
        try:
            while True:
                ctx = self._decode() if self._decode is not None else fobs.Context()
                frame = recv_frame(self.sock, self.max_frame, ctx)
                if not isinstance(frame, dict):
                    continue
                if "re" in frame:
                    with self._lock:
                        pending = self._pending.get(frame["re"])
                    if pending is not None:
                        if "error" in frame:
                            pending.error = ChannelError(str(frame["error"]))
                        pending.reply = frame.get("ok")
                        pending.done.set()
                elif "id" in frame:
                    self._pool.submit(self._answer, frame)
        except (ConnectionClosed, OSError, fobs.FOBSError):
            pass
        finally:
            self.close()

    def _answer(self, frame: dict[str, Any]) -> None:
        try:
            reply: dict[str, Any] = {
                "re": frame["id"],
                "ok": self.handler(str(frame.get("op")), frame.get("payload")),
            }
        except Exception as exc:
            reply = {"re": frame["id"], "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(OSError):
            self._send(reply)

    def close(self) -> None:
        """Fail every open request and stop; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending.values())
        for p in pending:
            p.error = ConnectionClosed("the connection closed")
            p.done.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        self._pool.shutdown(wait=False)
        if self._on_close is not None:
            self._on_close()
