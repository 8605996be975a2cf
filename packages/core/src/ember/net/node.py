"""A node that dials out to its hub (clients behind firewalls open no port)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

from ember.net.errors import ConnectError, TransportError
from ember.net.frames import (
    HELLO,
    PING,
    PROTOCOL_VERSION,
    WELCOME,
    Body,
    Header,
    OutFrame,
    ProtocolError,
    Reassembler,
    parse_fragment,
    parse_header,
)
from ember.net.messenger import Messenger, _Pending
from ember.net.outbox import Outbox
from ember.net.settings import NetSettings
from ember.net.tls import TlsFiles

log = logging.getLogger(__name__)

METHOD = "/ember.Hub/Connect"

_TLS_WORDS = ("ssl", "tls", "handshake", "certificate", "verification")


class _Link:
    """One connection to the hub; a node makes a new one each time it reconnects."""

    def __init__(self, channel: Any, call: Any, outbox: Outbox) -> None:
        self.channel = channel
        self.call = call
        self.outbox = outbox
        self.reassembler = Reassembler()
        self.last_heard = time.monotonic()
        self.closed = False
        self.reason = ""

    def end(self, reason: str) -> None:
        """Tear the connection down (its reader then reports ``reason``)."""
        if not self.reason:
            self.reason = reason
        self.outbox.close()
        self.call.cancel()


class NetNode(Messenger):
    """A named node connected to a :class:`~ember.net.Hub` over one gRPC stream.

    ``start`` registers it; then it sends requests to other nodes by name through the hub
    and serves theirs. A connection found dead (``net.heartbeat_interval``) or broken is
    dropped: requests waiting on it fail with TransportError, ``on_disconnect(reason)`` is
    called, and the node dials again with exponential backoff
    (``net.reconnect_backoff_min`` .. ``max``), calling ``on_reconnect()`` once registered.
    ``server_name``: the name the hub's certificate is checked against, when it differs
    from the address's host (certificates name "localhost" or "server").
    """

    def __init__(
        self,
        name: str,
        address: str,
        tls: TlsFiles | None,
        *,
        server_name: str | None = None,
    ) -> None:
        super().__init__(name, NetSettings.current())
        self.address = address
        self.tls = tls
        self.server_name = server_name
        self.on_disconnect: Callable[[str], None] | None = None
        self.on_reconnect: Callable[[], None] | None = None
        self._cond = threading.Condition(self._lock)
        self._link: _Link | None = None
        self._started = False
        self._closing = threading.Event()
        self._last_reason = "not connected yet"
        self._threads: list[threading.Thread] = []

    @property
    def connected(self) -> bool:
        """Whether the node is registered with its hub right now."""
        return self._link is not None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> NetNode:
        """Connect and register; returns once registered.

        An unreachable hub is tried again (with backoff) until ``timeout``
        (``net.connect_timeout`` by default). Raises :class:`ConnectError` at once if the hub
        refuses the name or the TLS handshake fails, or when time is up.
        """
        if self._started or self._closing.is_set():
            raise TransportError(f"{self.name} is already started (or closed)")
        timeout = self.settings.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        backoff = self.settings.backoff_min
        while True:
            try:
                link = self._dial(deadline)
                break
            except ConnectError as exc:
                retry = exc.kind == "unreachable" and time.monotonic() + backoff < deadline
                if not retry:
                    if exc.kind == "unreachable":
                        raise ConnectError(f"{exc} (tried for {timeout:g} s)", exc.kind) from None
                    raise
                if self._closing.wait(backoff):
                    raise ConnectError(f"{self.name} was closed while connecting") from None
                backoff = min(2 * backoff, self.settings.backoff_max)
        if not self._set_link(link):  # closed while dialling
            raise ConnectError(f"{self.name} was closed while connecting", "refused")
        self._started = True
        for target, what in ((self._session, "session"), (self._heartbeat, "heartbeat")):
            thread = threading.Thread(
                target=target, args=(link,) if what == "session" else (), daemon=True
            )
            thread.name = f"ember-net-{self.name}-{what}"
            thread.start()
            self._threads.append(thread)
        return self

    def close(self, grace: float = 2.0) -> None:
        """Disconnect for good. For up to ``grace`` seconds, running handlers finish and
        what is queued is sent (new requests get an error); then waiting requests fail and
        nothing reconnects."""
        self._closing.set()
        with self._cond:
            link = self._link
            self._cond.notify_all()
        session = self._threads[0] if self._threads else None
        if link is not None:
            if grace > 0 and session is not None and session is not threading.current_thread():
                deadline = time.monotonic() + grace
                self._drain(deadline)  # running handlers send their replies
                link.outbox.finish()  # the hub ends the stream once it has read everything
                session.join(max(0.0, deadline - time.monotonic()))
            link.end(f"{self.name} closed")
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)
        super().close()

    def __enter__(self) -> NetNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting ------------------------------------------------------------------------
    def _dial(self, deadline: float) -> _Link:
        """One attempt to connect and register, bounded by ``deadline``."""
        import grpc

        options: list[tuple[str, Any]] = [
            *self.settings.grpc_options(),
            ("grpc.use_local_subchannel_pool", 1),  # a fresh connection, not a cached one
        ]
        if self.tls is not None:
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            channel = grpc.secure_channel(
                self.address, self.tls.channel_credentials(), options=options
            )
        else:
            channel = grpc.insecure_channel(self.address, options=options)
        outbox = Outbox(self.settings.forward_buffer)
        hello = msgpack.packb({"version": PROTOCOL_VERSION})
        outbox.put_frame(
            OutFrame(Header(HELLO, 0, 0, self.name, "", ""), hello, self.settings.fragment_size)
        )
        call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)(
            iter(outbox), wait_for_ready=False
        )
        state = {"answered": False, "expired": False}
        guard = threading.Lock()

        def expire() -> None:
            with guard:
                if not state["answered"]:
                    state["expired"] = True
                    call.cancel()

        timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        timer.daemon = True
        timer.start()
        try:
            first = next(call)
            with guard:
                state["answered"] = True
            _flags, _, rest = parse_fragment(first)
            header, _ = parse_header(rest)
            if header.kind != WELCOME:
                raise ProtocolError(f"the hub answered the hello with {header.describe()}")
        except grpc.RpcError as exc:
            outbox.close()
            channel.close()
            if state["expired"]:
                raise ConnectError(
                    f"{self.name}: no answer from the hub at {self.address} in time", "timeout"
                ) from None
            raise self._classify(exc) from None
        except (StopIteration, ProtocolError) as exc:
            outbox.close()
            channel.close()
            raise ConnectError(
                f"{self.name}: the hub at {self.address} did not welcome it: "
                f"{exc or 'the stream ended'}",
                "refused",
            ) from None
        finally:
            timer.cancel()
        return _Link(channel, call, outbox)

    def _classify(self, exc: Any) -> ConnectError:
        """A ConnectError saying whether the hub refused, could not be reached, or the TLS
        handshake failed."""
        import grpc

        code, details = exc.code(), exc.details() or ""
        where = f"{self.name} -> hub at {self.address}"
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return ConnectError(f"{where}: refused: {details}", "refused")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ConnectError(f"{where}: refused (the hub is full): {details}", "refused")
        low = details.lower()
        if any(word in low for word in _TLS_WORDS):
            return ConnectError(f"{where}: TLS handshake failed: {details}", "tls")
        if "socket closed" in low and self.tls is not None and self._reachable():
            return ConnectError(
                f"{where}: TLS handshake failed: the hub closed the connection during the "
                "handshake (is this node's certificate signed by the project's CA?): "
                f"{details}",
                "tls",
            )
        return ConnectError(f"{where}: unreachable: {code.name}: {details}", "unreachable")

    def _reachable(self) -> bool:
        """Whether a plain TCP connection to the hub's address opens (tells a TLS refusal
        from a hub that is not there)."""
        host, _, port = self.address.rpartition(":")
        host = host.split("///")[-1].strip("[]")
        try:
            with socket.create_connection((host, int(port)), timeout=2.0):
                return True
        except (OSError, ValueError):
            return False

    def _set_link(self, link: _Link) -> bool:
        """Make ``link`` the node's connection; False (and the link ended) if closing."""
        with self._cond:
            if not self._closing.is_set():
                self._link = link
                self._cond.notify_all()
                return True
        link.end(f"{self.name} closed")
        return False

    # -- the connection's life ---------------------------------------------------------------
    def _session(self, link: _Link | None) -> None:
        """Read the stream; when it ends, fail what waited on it and reconnect."""
        while link is not None:
            reason = self._read(link)
            self._drop(link, reason)
            if self._closing.is_set():
                return
            self._callback(self.on_disconnect, reason)
            link = self._reconnect()
            if link is not None:
                self._callback(self.on_reconnect)

    def _read(self, link: _Link) -> str:
        import grpc

        try:
            for msg in link.call:
                link.last_heard = time.monotonic()
                flags, seq, rest = parse_fragment(msg)
                frame = link.reassembler.feed(flags, seq, rest)
                if frame is not None and frame.header.kind != PING:
                    self._deliver(frame)
            return link.reason or "the hub ended the stream"
        except grpc.RpcError as exc:
            return link.reason or f"the stream broke: {exc.code().name}: {exc.details()}"
        except ProtocolError as exc:
            return f"protocol error from the hub: {exc}"
        except Exception as exc:  # never leave the node without a reader
            log.exception("%s: reading from the hub failed", self.name)
            return f"reading failed: {type(exc).__name__}: {exc}"

    def _drop(self, link: _Link, reason: str) -> None:
        with self._cond:
            link.closed = True
            if self._link is link:
                self._link = None
            self._last_reason = reason
        link.end(reason)
        with contextlib.suppress(Exception):
            link.channel.close()
        self._fail_link(link, reason)
        if not self._closing.is_set():
            log.warning("%s lost its connection to %s: %s", self.name, self.address, reason)

    def _reconnect(self) -> _Link | None:
        backoff = self.settings.backoff_min
        while not self._closing.wait(backoff):
            try:
                link = self._dial(time.monotonic() + self.settings.connect_timeout)
            except ConnectError as exc:
                with self._cond:
                    self._last_reason = str(exc)
                log.info("%s: reconnecting failed: %s", self.name, exc)
                backoff = min(2 * backoff, self.settings.backoff_max)
                continue
            if not self._set_link(link):
                return None
            log.info("%s reconnected to %s", self.name, self.address)
            return link
        return None

    def _heartbeat(self) -> None:
        interval = self.settings.heartbeat_interval
        while not self._closing.wait(interval / 3):
            link = self._link
            if link is None:
                continue
            silent = time.monotonic() - link.last_heard
            if silent > interval:
                link.end(
                    f"no message from the hub for {silent:.1f} s (net.heartbeat_interval="
                    f"{interval:g})"
                )
                continue
            ping = Header(PING, 0, 0, self.name, "", "")
            link.outbox.put_frame(OutFrame(ping, b"", self.settings.fragment_size))

    def _callback(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("%s: callback %s failed", self.name, fn)

    # -- frames out --------------------------------------------------------------------------
    def _send(
        self, header: Header, body: Body, pending: _Pending | None, deadline: float | None
    ) -> None:
        frame = OutFrame(header, body, self.settings.fragment_size)
        with self._cond:
            if deadline is not None:
                until = min(deadline, time.monotonic() + self.settings.connect_timeout)
                while self._link is None and not self._closing.is_set() and self._started:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            link = self._link
            if link is None or link.closed:
                if self._closing.is_set():
                    raise TransportError(f"{self.name} is closed")
                if not self._started:
                    raise TransportError(f"{self.name} is not started")
                raise TransportError(
                    f"{self.name} is not connected to the hub at {self.address}: "
                    f"{self._last_reason}"
                )
            if pending is not None:
                pending.link = link
        if not link.outbox.put_frame(frame):
            raise TransportError(f"connection lost: {link.reason or 'the stream closed'}")
