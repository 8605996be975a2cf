"""Handlers by topic and requests matched to their replies: what a node does with frames,
whatever carries them (a node's stream to its hub, or the hub itself)."""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ember.config import describe_timeout
from ember.net.errors import TransportError, UnknownTopicError
from ember.net.frames import (
    ERROR,
    NO_REPLY,
    REPLY,
    REQUEST,
    Body,
    Header,
    InFrame,
    body_views,
    error_body,
    parse_error,
)
from ember.net.settings import NetSettings

log = logging.getLogger(__name__)

NetHandler = Callable[[str, Any], Any]
"""``handler(sender, body) -> reply body`` (bytes-like, a list of them, or None)."""


class RemoteError(TransportError):
    """The target's handler raised; ``remote_type`` and ``remote_message`` say what."""

    def __init__(self, message: str, remote_type: str, remote_message: str) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_message = remote_message


class _Pending:
    """A request waiting for its reply."""

    __slots__ = ("error", "event", "frame", "link", "target", "topic")

    def __init__(self, target: str, topic: str) -> None:
        self.target = target
        self.topic = topic
        self.event = threading.Event()
        self.frame: InFrame | None = None
        self.error: BaseException | None = None
        self.link: object = None  # the connection it went out on


class Messenger:
    """The transport-independent half of a node.

    Requests carry ids; replies are matched by id, so many requests are in flight at once.
    Incoming requests run in a thread pool (``net.handler_threads``), never on the thread
    that reads the stream: a handler may itself make requests. Each handler runs in the
    context (config) that was current when it was registered.
    """

    def __init__(self, name: str, settings: NetSettings) -> None:
        self.name = name
        self.settings = settings
        self._handlers: dict[str, tuple[NetHandler, type, contextvars.Context]] = {}
        self._pool = ThreadPoolExecutor(
            settings.handler_threads, thread_name_prefix=f"ember-net-{name}"
        )
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a handler returns
        self._active = 0  # handlers running
        self._in_handler = threading.local()
        self._draining = False  # closing: new requests are answered with an error
        self._closed = False

    # -- to implement ----------------------------------------------------------------------
    def _send(
        self, header: Header, body: Body, pending: _Pending | None, deadline: float | None
    ) -> None:
        """Queue a frame. For a request, bind ``pending.link`` to the connection under
        ``self._lock``, checking that it is still up, so a connection lost later fails it.
        ``deadline``: how long to wait for a connection (None: do not wait)."""
        raise NotImplementedError

    # -- public API ------------------------------------------------------------------------
    def register_handler(self, topic: str, handler: NetHandler, *, body_type: type = bytes) -> None:
        """Handle ``topic`` with ``handler(sender, body) -> reply``.

        ``body_type``: ``bytes`` (default), ``bytearray`` (writable) or ``memoryview``
        (read-only, no copy when the frame came in one fragment). The reply may be any
        bytes-like object, a list of them (sent back to back, not joined), or None (empty).
        """
        if body_type not in (bytes, bytearray, memoryview):
            raise TypeError(f"body_type must be bytes, bytearray or memoryview, not {body_type}")
        self._handlers[topic] = (handler, body_type, contextvars.copy_context())

    def request(
        self,
        target: str,
        topic: str,
        body: Body,
        timeout: float | None,
        *,
        reply_type: type = bytes,
    ) -> Any:
        """Send ``body`` to ``target``'s ``topic`` handler and return its reply.

        Raises :class:`RemoteError` (a TransportError) with the remote exception's type and
        message if the handler raised, UnknownTopicError if it has no such handler,
        TransportError if the target is not connected or the connection is lost while
        waiting, TimeoutError if no reply comes within ``timeout`` (None: no limit).
        ``reply_type`` as ``body_type`` in :meth:`register_handler`.
        """
        ident = next(self._ids)
        pending = _Pending(target, topic)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                raise TransportError(f"{self.name} is closed")
            self._pending[ident] = pending
        try:
            self._send(
                Header(REQUEST, 0, ident, self.name, target, topic),
                body,
                pending,
                deadline if deadline is not None else time.monotonic() + 1e9,
            )
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not pending.event.wait(remaining):
                raise TimeoutError(
                    f"{self.name}: no reply from {target} to {topic!r} within "
                    f"{describe_timeout(timeout)}"
                )
        finally:
            with self._lock:
                self._pending.pop(ident, None)
        if pending.error is not None:
            raise pending.error
        assert pending.frame is not None
        return self._reply_value(pending, pending.frame, reply_type)

    def fire(self, target: str, topic: str, body: Body) -> None:
        """Send without waiting for a reply: the target's handler runs, its result and any
        error stay there. Raises TransportError if it cannot be sent."""
        deadline = time.monotonic() + self.settings.connect_timeout
        header = Header(REQUEST, NO_REPLY, next(self._ids), self.name, target, topic)
        self._send(header, body, None, deadline)

    def handles(self) -> list[str]:
        """The topics this node has handlers for."""
        return sorted(self._handlers)

    def _drain(self, deadline: float) -> None:
        """Refuse new requests and wait (until ``deadline``) for running handlers to reply."""
        mine = 1 if getattr(self._in_handler, "active", False) else 0
        with self._idle:
            self._draining = True
            while self._active > mine and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)

    def close(self) -> None:
        """Fail every waiting request and stop the handler threads (running handlers end on
        their own)."""
        with self._lock:
            self._closed = True
            waiting = list(self._pending.values())
        for pending in waiting:
            self._finish(pending, error=TransportError(f"{self.name} is closed"))
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- frames in ---------------------------------------------------------------------------
    def _deliver(self, frame: InFrame) -> None:
        """A frame for this node arrived (called by a stream's reader: must not block)."""
        header = frame.header
        if header.kind == REQUEST:
            try:
                self._pool.submit(self._serve, frame)
            except RuntimeError:  # closed
                log.debug("%s is closed: dropping %s", self.name, header.describe())
            return
        if header.kind in (REPLY, ERROR):
            with self._lock:
                pending = self._pending.get(header.id)
            if pending is None or pending.target != header.source:
                log.debug("%s: no request waits for %s", self.name, header.describe())
                return
            self._finish(pending, frame=frame)

    def _finish(
        self,
        pending: _Pending,
        frame: InFrame | None = None,
        error: BaseException | None = None,
    ) -> None:
        with self._lock:
            if pending.event.is_set():
                return
            pending.frame, pending.error = frame, error
            pending.event.set()

    def _fail_link(self, link: object, reason: str) -> None:
        """Fail the requests waiting on a connection that is gone."""
        with self._lock:
            victims = [p for p in self._pending.values() if p.link is link]
        for pending in victims:
            self._finish(
                pending,
                error=TransportError(
                    f"connection lost: {reason} ({self.name} was waiting for {pending.target} "
                    f"to answer {pending.topic!r})"
                ),
            )

    def _reply_value(self, pending: _Pending, frame: InFrame, reply_type: type) -> Any:
        if frame.header.kind == REPLY:
            return frame.body(reply_type)
        info = parse_error(frame.body(memoryview))
        kind, message = info.get("type", "Exception"), info.get("message", "")
        if info.get("origin") == "hub":
            raise TransportError(message)
        if kind == "UnknownTopicError":
            raise UnknownTopicError(message)
        raise RemoteError(
            f"{pending.target} failed handling {pending.topic!r} from {self.name}: "
            f"{kind}: {message}",
            kind,
            message,
        )

    def _serve(self, frame: InFrame) -> None:
        """Run the handler of one request (in a pool thread) and send its reply."""
        with self._lock:
            self._active += 1
        self._in_handler.active = True
        try:
            self._serve_one(frame)
        finally:
            self._in_handler.active = False
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _serve_one(self, frame: InFrame) -> None:
        header = frame.header
        no_reply = bool(header.flags & NO_REPLY)
        entry = self._handlers.get(header.topic)
        body: Body
        try:
            if self._draining:
                raise TransportError(f"{self.name} is closing")
            if entry is None:
                raise UnknownTopicError(
                    f"{self.name} has no handler for topic {header.topic!r} (sent by "
                    f"{header.source}); it handles {self.handles()}"
                )
            handler, body_type, ctx = entry
            result = ctx.copy().run(handler, header.source, frame.body(body_type))
            try:
                parts = body_views(b"" if result is None else result)
            except TypeError:
                raise TypeError(
                    f"the handler of {header.topic!r} returned {type(result).__name__}, "
                    "not bytes (or a list of bytes-like objects)"
                ) from None
        except Exception as exc:
            if no_reply:
                log.warning(
                    "%s: handler of %s failed: %s: %s",
                    self.name,
                    header.describe(),
                    type(exc).__name__,
                    exc,
                )
                return
            kind, body = ERROR, error_body(exc, "handler")
        else:
            if no_reply:
                return
            kind, body = REPLY, parts
        try:
            self._send(
                Header(kind, 0, header.id, self.name, header.source, header.topic), body, None, None
            )
        except Exception as exc:
            log.info("%s: cannot reply to %s: %s", self.name, header.describe(), exc)
