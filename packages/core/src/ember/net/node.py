"""A node that dials out to its hub (clients behind firewalls open no port)."""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

from ember.config import describe_timeout, setting_timeout
from ember.net.errors import ConnectError, TransportError
from ember.net.frames import (
    CHALLENGE,
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

    def __init__(
        self, channel: Any, call: Any, outbox: Outbox, settings: NetSettings | None = None
    ) -> None:
        self.channel = channel
        self.call = call
        self.outbox = outbox
        self.reassembler = (
            Reassembler.from_settings(settings) if settings is not None else Reassembler()
        )
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
    ``tls``: the project CA, this node's certificate and key, and the connection security
    (:class:`~ember.net.TlsFiles`), which must be the hub's; ``None``: plain gRPC with no
    identity (tests only). With ``tls`` or ``clear`` security the node signs the hub's
    challenge with its key; with ``clear`` it checks the hub's signature and certificate
    (issued by the CA, valid, naming ``server_name`` or the address's host) in place of TLS.
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
    def security(self) -> str:
        """The connection security: ``mtls``, ``tls``, ``clear``, or ``none`` (tls=None)."""
        return self.tls.security if self.tls is not None else "none"

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
        timeout = setting_timeout("net.connect_timeout") if timeout is None else timeout
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
                        raise ConnectError(
                            f"{exc} (tried for {describe_timeout(timeout)})", exc.kind
                        ) from None
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

        proof = self._proof_material()
        options: list[tuple[str, Any]] = [
            *self.settings.grpc_options(),
            ("grpc.use_local_subchannel_pool", 1),  # a fresh connection, not a cached one
        ]
        if self.tls is not None and self.tls.uses_tls:
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            channel = grpc.secure_channel(
                self.address, self.tls.channel_credentials(), options=options
            )
        else:
            channel = grpc.insecure_channel(self.address, options=options)
        outbox = Outbox(self.settings.forward_buffer)
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
            hub, nonce = self._challenged(next(call))
            outbox.put_frame(self._hello(hub, nonce, proof))
            welcome = next(call)
            with guard:
                state["answered"] = True
            _flags, _, rest = parse_fragment(welcome)
            header, body = parse_header(rest)
            if header.kind != WELCOME:
                raise ProtocolError(f"the hub answered the hello with {header.describe()}")
            self._check_welcome(header.source, bytes(body), proof)
        except ConnectError:
            outbox.close()
            call.cancel()
            channel.close()
            raise
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
        return _Link(channel, call, outbox, self.settings)

    def _proof_material(self) -> dict[str, Any]:
        """What this node proves its identity with (tls, clear): its certificate, its key,
        the CA and a nonce for the hub to sign (clear)."""
        if self.tls is None or self.security == "mtls":
            return {}
        from ember.net.identity import IdentityError, load_certificate, load_private_key

        ca, cert, key = self.tls._read()
        try:
            return {
                "ca": load_certificate(ca, f"project CA ({self.tls.ca})"),
                "certificate": cert,
                "key": load_private_key(key, f"key {self.tls.key}"),
                "nonce": secrets.token_bytes(32),
            }
        except IdentityError as exc:
            raise ConnectError(f"{self.name}: {exc}", "tls") from None

    def _challenged(self, first: bytes) -> tuple[str, bytes]:
        """The hub's name and nonce from its challenge (checked: its protocol version and
        connection security are this node's)."""
        _flags, _, rest = parse_fragment(first)
        header, body = parse_header(rest)
        if header.kind != CHALLENGE:
            raise ProtocolError(f"the hub opened the stream with {header.describe()}")
        try:
            info = msgpack.unpackb(body)
        except Exception:
            info = None
        if not isinstance(info, dict) or not isinstance(info.get("nonce"), bytes):
            raise ProtocolError("a malformed challenge")
        where = f"{self.name} -> hub at {self.address}"
        if info.get("version") != PROTOCOL_VERSION:
            raise ConnectError(
                f"{where}: the hub speaks protocol version {info.get('version')!r}, this "
                f"node {PROTOCOL_VERSION}",
                "refused",
            )
        if info.get("security") != self.security:
            raise ConnectError(
                f"{where}: connection security mismatch: the hub uses "
                f"{info.get('security')!r}, this node {self.security!r}",
                "security",
            )
        return header.source, info["nonce"]

    def _hello(self, hub: str, nonce: bytes, proof: dict[str, Any]) -> OutFrame:
        hello: dict[str, Any] = {"version": PROTOCOL_VERSION, "security": self.security}
        if proof:
            from ember.net.identity import hello_statement, sign

            statement = hello_statement(self.security, hub, nonce, self.name)
            hello["certificate"] = proof["certificate"]
            hello["signature"] = sign(proof["key"], statement)
            hello["nonce"] = proof["nonce"]
        header = Header(HELLO, 0, 0, self.name, "", "")
        return OutFrame(header, msgpack.packb(hello), self.settings.fragment_size)

    def _check_welcome(self, hub: str, body: bytes, proof: dict[str, Any]) -> None:
        """With ``clear``, the hub's proof of identity: a certificate the CA issued, valid,
        naming the host this node dialled, and its signature over this node's nonce."""
        if self.security != "clear":
            return
        from ember.net.identity import (
            IdentityError,
            check_host,
            verify_certificate,
            verify_signature,
            welcome_statement,
        )

        where = f"{self.name} -> hub at {self.address}"
        try:
            info = msgpack.unpackb(body) if body else {}
        except Exception:
            info = {}
        pem = info.get("certificate") if isinstance(info, dict) else None
        signature = info.get("signature") if isinstance(info, dict) else None
        if not isinstance(pem, bytes) or not isinstance(signature, bytes):
            raise ConnectError(f"{where}: the hub did not prove its identity", "tls")
        try:
            cert = verify_certificate(pem, proof["ca"], "server")
            check_host(cert, self.server_name or self._host())
            statement = welcome_statement(self.security, hub, proof["nonce"], self.name)
            verify_signature(cert, signature, statement)
        except IdentityError as exc:
            raise ConnectError(f"{where}: the hub's identity is not proven: {exc}", "tls") from None

    def _host(self) -> str:
        host = self.address.rpartition(":")[0] or self.address
        return host.split("///")[-1].strip("[]")

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
        uses_tls = self.tls is not None and self.tls.uses_tls
        if uses_tls and "wrong_version_number" in low:
            return ConnectError(
                f"{where}: connection security mismatch: the hub does not speak TLS (is its "
                f"connection security 'clear'? this node's is {self.security!r}): {details}",
                "security",
            )
        if any(word in low for word in _TLS_WORDS):
            return ConnectError(f"{where}: TLS handshake failed: {details}", "tls")
        if "socket closed" in low and self._reachable():
            if self.security == "tls":  # a hub with tls asks for no client certificate
                return ConnectError(
                    f"{where}: connection security mismatch: the hub closed the connection "
                    "during the TLS handshake (does it require mutual TLS, a client "
                    f"certificate? this node's connection security is 'tls'): {details}",
                    "security",
                )
            if not uses_tls:
                return ConnectError(
                    f"{where}: connection security mismatch: the hub closed a plain "
                    f"connection at once (does it require TLS? this node's connection "
                    f"security is {self.security!r}): {details}",
                    "security",
                )
            return ConnectError(
                f"{where}: TLS handshake failed: the hub closed the connection during the "
                f"handshake ({self._diagnosis()}): {details}",
                "tls",
            )
        return ConnectError(f"{where}: unreachable: {code.name}: {details}", "unreachable")

    def _diagnosis(self) -> str:
        """Why the hub may have refused this node's certificate, as far as it can tell."""
        from ember.net.identity import diagnose

        assert self.tls is not None
        try:
            ca, cert, _ = self.tls._read()
            why = diagnose(cert, ca)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why:
            return f"this node's {why}"
        return "is this node's certificate signed by the project's CA, and valid now?"

    def _reachable(self) -> bool:
        """Whether a plain TCP connection to the hub's address opens (tells a TLS refusal
        from a hub that is not there)."""
        port = self.address.rpartition(":")[2]
        host = self._host()
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
        link.reassembler.clear()
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
