"""The hub: a gRPC server that registers nodes and routes frames between them by name."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgpack

from ember.net.errors import TransportError
from ember.net.frames import (
    ABORT,
    CHALLENGE,
    ERROR,
    FIRST,
    HELLO,
    LAST,
    NO_REPLY,
    PING,
    PROTOCOL_VERSION,
    REPLY,
    REQUEST,
    WELCOME,
    Body,
    Header,
    InFrame,
    OutFrame,
    ProtocolError,
    Reassembler,
    abort_fragment,
    body_views,
    error_body,
    parse_fragment,
    parse_header,
)
from ember.net.messenger import Messenger, _Pending
from ember.net.outbox import Outbox
from ember.net.settings import NetSettings
from ember.net.tls import TlsFiles, peer_certificate, peer_common_name

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

Authorize = Callable[[str | None, str], str | None]
"""``authorize(peer certificate common name, requested node name) -> None | reason``."""

_LOCAL = object()  # a route to the hub's own node


class RefusalLog:
    """Refused connections, logged at most once per ``window`` seconds per source address
    and reason, with a count ("refused 885 connections from 127.0.0.1 in the last 60 s:
    ..."), so an attacker cannot fill the disk with refusals. The first of each kind is
    logged at once."""

    def __init__(self, hub: str, window: float = 60.0) -> None:
        self.hub = hub
        self.window = window
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._since: dict[tuple[str, str], float] = {}

    def refused(self, source: str, reason: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        key = (source, reason)
        with self._lock:
            if key not in self._since:
                self._since[key] = now
                self._counts[key] = 0
                first = True
            else:
                first = False
                self._counts[key] += 1
        if first:
            log.warning("hub %s refused a connection from %s: %s", self.hub, source, reason)
        self.flush(now)

    def flush(self, now: float | None = None, force: bool = False) -> None:
        """Log the counts of windows that have passed (all of them with ``force``)."""
        now = time.monotonic() if now is None else now
        due = []
        with self._lock:
            for key, since in list(self._since.items()):
                if force or now - since >= self.window:
                    count = self._counts.pop(key)
                    del self._since[key]
                    if count:
                        due.append((key, count, now - since))
        for (source, reason), count, span in due:
            log.warning(
                "hub %s refused %d connections from %s in the last %.0f s: %s",
                self.hub,
                count,
                source,
                span,
                reason,
            )


def _source(context: Any) -> str:
    """The peer's address without its port (``ipv4:127.0.0.1:5555`` -> ``127.0.0.1``)."""
    try:
        peer = str(context.peer())
    except Exception:
        return "?"
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")
    return peer


class _Conn:
    """One connected node's stream, as the hub sees it."""

    def __init__(
        self,
        peer_cn: str | None,
        peer_pem: bytes | None,
        outbox: Outbox,
        context: Any,
        settings: NetSettings | None = None,
    ) -> None:
        self.peer_cn = peer_cn  # the proven identity (None until proven, or never)
        self.peer_pem = peer_pem
        self.nonce = secrets.token_bytes(32)  # the challenge this connection must sign
        self.outbox = outbox
        self.context = context
        self.name: str | None = None
        self.opened = time.monotonic()
        self.last_heard = self.opened
        self.blocked = False  # its reader waits for a slow receiver: alive all the same
        self.gone = False  # unregistered (set under the hub's lock)
        self.reason = ""
        self.reassembler = (
            Reassembler.from_settings(settings) if settings is not None else Reassembler()
        )
        # frames it is sending, by fragment seq: where they go, and the request their
        # last fragment answers (a reply in flight still counts as awaited)
        self.routes: dict[int, tuple[object, tuple[str, int] | None]] = {}
        self.awaited: dict[tuple[str, int], str] = {}  # requests sent to it: (source, id)

    def close(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        self.outbox.close()
        with contextlib.suppress(Exception):
            self.context.cancel()


class HubLocal(Messenger):
    """The hub's own node (the server's endpoint): handlers and requests like a NetNode."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub.name, hub.settings)
        self._hub = hub

    def _send(
        self, header: Header, body: Body, pending: _Pending | None, deadline: float | None
    ) -> None:
        hub = self._hub
        if header.target == self.name:  # to itself
            if pending is not None:
                pending.link = self
            self._deliver(InFrame(header, body_views(body)))
            return
        frame = OutFrame(header, body, hub.settings.fragment_size)
        with hub._lock:
            conn = hub._conns.get(header.target)
            if conn is None or conn.gone:
                raise TransportError(f"{header.target} is not connected")
            if pending is not None:
                with self._lock:
                    pending.link = conn
        if not conn.outbox.put_frame(frame):
            raise TransportError(f"connection lost: {header.target}: {conn.reason}")


class Hub:
    """Registers nodes and routes their frames; the hub is a node itself (:attr:`local`).

    One gRPC port, one bidirectional method (``/ember.Hub/Connect``). ``tls`` holds the
    project CA, the hub's certificate and key, and the connection security
    (:class:`TlsFiles`): with ``mtls`` every party presents a certificate signed by the
    project CA in the TLS handshake; with ``tls`` (server-authenticated TLS) or ``clear``
    (plain gRPC) it proves the same in the protocol, with its certificate and a signature over
    the hub's challenge (:mod:`ember.net.identity`). Either way a certificate from another
    CA, an expired one, or one without its key is refused, and the certificate's common name
    is the peer's identity. ``tls=None`` serves plain gRPC with no identities (tests only).
    The hub opens each stream with a challenge; the node answers with a hello naming the
    name it wants; ``authorize(peer common name, name)`` returns None to accept or a reason
    to refuse; :meth:`peer_certificate` gives a connected node's certificate.
    A name already connected is refused unless that connection is dead
    (``net.heartbeat_interval``), in which case the new one replaces it. Frames are routed
    by target name, fragment by fragment, without reading their bodies; a frame whose
    source is not its stream's registered name closes that stream.
    ``on_connect(name)`` / ``on_disconnect(name, reason)`` are called in order, on a
    thread of their own.
    """

    def __init__(
        self,
        name: str,
        bind: str,
        tls: TlsFiles | None,
        authorize: Authorize,
    ) -> None:
        self.name = name
        self.bind = bind
        self.tls = tls
        self.authorize = authorize
        self.settings = NetSettings.current()
        self.on_connect: Callable[[str], None] | None = None
        self.on_disconnect: Callable[[str, str], None] | None = None
        self.local = HubLocal(self)
        self.refusals = RefusalLog(name)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # notified when a node goes
        self._conns: dict[str, _Conn] = {}
        self._unnamed: set[_Conn] = set()
        self._events = ThreadPoolExecutor(1, thread_name_prefix=f"ember-hub-{name}-events")
        self._stopping = threading.Event()
        self._server: Any = None
        self._port: int | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self._ca: x509.Certificate | None = None  # to check certificates (tls, clear)
        self._own_pem = b""  # the hub's certificate and key, to prove itself (clear)
        self._own_key: Any = None

    @property
    def security(self) -> str:
        """The connection security: ``mtls``, ``tls``, ``clear``, or ``none`` (tls=None)."""
        return self.tls.security if self.tls is not None else "none"

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise TransportError(f"hub {self.name} is not started")
        return self._port

    def peer_certificate(self, name: str) -> bytes | None:
        """The PEM certificate the connected node ``name`` proved it holds (in the TLS
        handshake, or with a signed challenge); None: not connected, or ``tls=None``."""
        with self._lock:
            conn = self._conns.get(name)
            return conn.peer_pem if conn is not None and not conn.gone else None

    def connected(self) -> list[str]:
        """The names of the nodes connected now."""
        with self._lock:
            return sorted(name for name, conn in self._conns.items() if not conn.gone)

    def start(self) -> Hub:
        """Bind and serve; returns self."""
        import grpc

        self._load_identity()
        handler = grpc.method_handlers_generic_handler(
            "ember.Hub",
            {
                "Connect": grpc.stream_stream_rpc_method_handler(
                    self._serve, request_deserializer=None, response_serializer=None
                )
            },
        )
        limit = self.settings.max_connections
        server = grpc.server(
            ThreadPoolExecutor(limit, thread_name_prefix=f"ember-hub-{self.name}"),
            handlers=[handler],
            options=self.settings.server_options(),
            maximum_concurrent_rpcs=limit,
        )
        try:
            if self.tls is not None and self.tls.uses_tls:
                port = server.add_secure_port(self.bind, self.tls.server_credentials())
            else:
                port = server.add_insecure_port(self.bind)
        except RuntimeError as exc:
            raise TransportError(f"hub {self.name} cannot bind {self.bind}: {exc}") from exc
        if not port:
            raise TransportError(f"hub {self.name} cannot bind {self.bind}")
        server.start()
        self._server, self._port = server, port
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat, daemon=True, name=f"ember-hub-{self.name}-heartbeat"
        )
        self._heartbeat_thread.start()
        return self

    def _load_identity(self) -> None:
        """Read what checking nodes' proofs (and, with ``clear``, proving its own) takes."""
        if self.tls is None or self.security == "mtls":
            return
        from ember.net.identity import IdentityError, load_certificate, load_private_key

        ca, cert, key = self.tls._read()
        try:
            self._ca = load_certificate(ca, f"project CA ({self.tls.ca})")
            if self.security == "clear":
                load_certificate(cert, f"hub certificate ({self.tls.cert})")
                self._own_pem, self._own_key = cert, load_private_key(key, f"key {self.tls.key}")
        except IdentityError as exc:
            raise TransportError(f"hub {self.name}: {exc}") from None

    def stop(self, grace: float | None = None) -> None:
        """Stop serving: no new connections. With a ``grace`` (seconds), running handlers of
        :attr:`local` finish and what is queued for each node is sent first, for up to that
        long; then every connection is closed."""
        self._stopping.set()
        deadline = time.monotonic() + (grace or 0.0)
        with self._lock:
            conns = [*self._conns.values(), *self._unnamed]
        if grace:
            self.local._drain(deadline)
            for conn in conns:
                conn.outbox.finish()  # its stream ends once its queue is sent
        stopped = self._server.stop(grace or 0) if self._server is not None else None
        with self._cond:
            while self._conns and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            conns = [*self._conns.values(), *self._unnamed]
        for conn in conns:
            self._unregister(conn, f"the hub {self.name} is stopping")
        if stopped is not None:
            stopped.wait()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=5.0)
        self.local.close()
        self._events.shutdown(wait=True)

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(0)

    # -- one connection ----------------------------------------------------------------------
    def _serve(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        """The gRPC handler: admit the node, then send its outbox until it closes."""
        import grpc

        if self.security == "mtls":  # the handshake proved it
            peer_cn, peer_pem = peer_common_name(context), peer_certificate(context)
        else:  # proven by the hello, or never (tls=None)
            peer_cn, peer_pem = None, None
        conn = _Conn(
            peer_cn, peer_pem, Outbox(self.settings.forward_buffer), context, self.settings
        )
        with self._lock:
            self._unnamed.add(conn)
        context.add_callback(lambda: conn.close("the stream ended"))
        challenge = msgpack.packb(
            {"version": PROTOCOL_VERSION, "security": self.security, "nonce": conn.nonce}
        )
        frame = OutFrame(Header(CHALLENGE, 0, 0, self.name, "", ""), challenge, 1 << 16)
        yield frame.next_fragment()
        try:
            refusal = self._admit(conn, requests)
        except Exception as exc:  # the stream broke, or the heartbeat gave up on the hello
            refusal = conn.reason or f"no hello: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._unnamed.discard(conn)
        if refusal is not None:
            self.refusals.refused(f"{_source(context)} (cn={conn.peer_cn})", refusal)
            conn.reason = refusal
            conn.outbox.close()
            context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        assert conn.name is not None
        reader = threading.Thread(
            target=self._read, args=(conn, requests), daemon=True, name=f"ember-hub-{conn.name}"
        )
        reader.start()
        self._event(self.on_connect, conn.name)
        log.info("hub %s: %s connected (cn=%s)", self.name, conn.name, conn.peer_cn)
        try:
            yield from conn.outbox
        finally:
            self._unregister(conn, conn.reason or "the stream ended")

    def _admit(self, conn: _Conn, requests: Iterator[bytes]) -> str | None:
        """Read the hello; register the node, or return why not."""
        flags, _, rest = parse_fragment(next(requests))
        header, body = parse_header(rest)
        if header.kind != HELLO or flags != FIRST | LAST:
            return "the first frame must be a hello"
        try:
            hello = msgpack.unpackb(body)
            if not isinstance(hello, dict):
                hello = {}
        except Exception:
            hello = {}
        version = hello.get("version")
        if version != PROTOCOL_VERSION:
            return (
                f"protocol version {version!r} is not supported (the hub speaks {PROTOCOL_VERSION})"
            )
        security = hello.get("security")
        if security != self.security:
            return (
                f"connection security mismatch: the hub uses {self.security!r}, the node "
                f"{security!r}"
            )
        name = header.source
        if not name or name == self.name:
            return f"the name {name!r} is reserved"
        why = self._prove(conn, hello, name)
        if why:
            return why
        try:
            why = self.authorize(conn.peer_cn, name)
        except Exception as exc:
            why = f"authorize failed: {type(exc).__name__}: {exc}"
        if why:
            return str(why)
        welcome = Header(WELCOME, 0, 0, self.name, name, "")
        proof = b""
        if self.security == "clear":  # no TLS: the hub proves itself too
            from ember.net.identity import sign, welcome_statement

            statement = welcome_statement(self.security, self.name, hello["nonce"], name)
            signature = sign(self._own_key, statement)
            proof = msgpack.packb({"certificate": self._own_pem, "signature": signature})
        conn.outbox.put_frame(OutFrame(welcome, proof, self.settings.fragment_size))
        with self._lock:
            old = self._conns.get(name)
            if old is not None and not old.gone:
                silent = time.monotonic() - old.last_heard
                if old.blocked or silent <= self.settings.heartbeat_interval:
                    return f"{name} is already connected"
                replaced = old
            else:
                replaced = None
            conn.name = name
            conn.last_heard = time.monotonic()
            self._conns[name] = conn
        if replaced is not None:
            self._unregister(replaced, "replaced by a new connection of the same name")
        return None

    def _prove(self, conn: _Conn, hello: dict[str, Any], name: str) -> str | None:
        """Establish the node's identity (``conn.peer_cn`` and ``peer_pem``), or say why its
        certificate does not prove one."""
        if self.security == "none":
            return None
        from ember.net.identity import (
            NONCE_BYTES,
            IdentityError,
            check_validity,
            common_name,
            hello_statement,
            load_certificate,
            verify_certificate,
            verify_signature,
        )

        try:
            if self.security == "mtls":  # the handshake checked the chain and dates; now, too
                if conn.peer_pem is None:
                    return "no client certificate"
                check_validity(load_certificate(conn.peer_pem))
                return None
            pem, signature = hello.get("certificate"), hello.get("signature")
            if not isinstance(pem, bytes) or not isinstance(signature, bytes):
                return (
                    f"no certificate and signature in the hello (connection security "
                    f"{self.security!r} requires them)"
                )
            nonce = hello.get("nonce")
            if self.security == "clear" and not (
                isinstance(nonce, bytes) and len(nonce) == NONCE_BYTES
            ):
                return "no challenge for the hub in the hello"
            assert self._ca is not None
            cert = verify_certificate(pem, self._ca, "client")
            statement = hello_statement(self.security, self.name, conn.nonce, name)
            verify_signature(cert, signature, statement)
        except IdentityError as exc:
            return str(exc)
        conn.peer_cn, conn.peer_pem = common_name(cert) or None, pem
        return None

    def _read(self, conn: _Conn, requests: Iterator[bytes]) -> None:
        try:
            for msg in requests:
                conn.last_heard = time.monotonic()
                self._route(conn, msg)
                if conn.gone:
                    return
            reason = conn.reason or "the node closed the stream"
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.warning("hub %s: closing %s: %s", self.name, conn.name, reason)
        except Exception as exc:
            reason = conn.reason or f"the stream broke: {type(exc).__name__}: {exc}"
        self._unregister(conn, reason)

    def _unregister(self, conn: _Conn, reason: str) -> None:
        """Drop a connection: fail the requests it had yet to answer, tell on_disconnect."""
        with self._lock:
            if conn.gone:
                return
            conn.gone = True
            self._unnamed.discard(conn)
            registered = conn.name is not None and self._conns.get(conn.name) is conn
            if registered:
                del self._conns[conn.name]  # type: ignore[arg-type]
            awaited, conn.awaited = conn.awaited, {}
            routes, conn.routes = conn.routes, {}
            self._cond.notify_all()
        conn.reassembler.clear()  # what it sent of unfinished frames goes now
        conn.close(reason)
        if conn.name is None:
            return
        for seq, (dest, _) in routes.items():  # frames it was sending: never to be completed
            if isinstance(dest, _Conn):
                dest.outbox.put_frame_fragment(abort_fragment(seq))
        for (source, ident), topic in awaited.items():
            lost = TransportError(
                f"connection lost: {conn.name} disconnected ({reason}) before answering "
                f"{topic!r} from {source}"
            )
            self._hub_error(source, conn.name, ident, topic, lost)
        self.local._fail_link(conn, f"{conn.name} disconnected ({reason})")
        if registered:
            log.info("hub %s: %s disconnected: %s", self.name, conn.name, reason)
            self._event(self.on_disconnect, conn.name, reason)

    # -- routing ---------------------------------------------------------------------------
    def _route(self, conn: _Conn, msg: bytes) -> None:
        """Pass one fragment on to its target (or to the hub's own node)."""
        flags, seq, rest = parse_fragment(msg)
        first = None
        if flags & FIRST:
            first = parse_header(rest)
            header = first[0]
            if header.kind == PING:
                return
            if header.source != conn.name:
                raise ProtocolError(f"{conn.name} sent a frame as {header.source!r}")
            if header.kind not in (REQUEST, REPLY, ERROR):
                raise ProtocolError(f"{conn.name} sent {header.describe()}")
            dest = self._destination(conn, header)
            answers = (header.target, header.id) if header.kind in (REPLY, ERROR) else None
        else:
            if seq not in conn.routes:
                raise ProtocolError(f"a fragment continues sequence {seq}, which never started")
            dest, answers = conn.routes[seq]
        if flags & (LAST | ABORT):
            conn.routes.pop(seq, None)
            if answers is not None:
                with self._lock:
                    conn.awaited.pop(answers, None)
        elif first is not None:
            if len(conn.routes) >= self.settings.max_partial_messages:
                raise ProtocolError(
                    f"more than {self.settings.max_partial_messages} unfinished messages on "
                    f"one connection (net.max_partial_messages)"
                )
            conn.routes[seq] = (dest, answers)
        if dest is _LOCAL:
            frame = conn.reassembler.feed(flags, seq, rest, first)
            if frame is not None:
                self.local._deliver(frame)
        elif isinstance(dest, _Conn):
            conn.blocked = True
            try:
                dest.outbox.put_fragment(msg)  # as it came: no copy, no decoding
            finally:
                conn.blocked = False

    def _destination(self, conn: _Conn, header: Header) -> object:
        if header.target == self.name:
            return _LOCAL
        with self._lock:
            dest = self._conns.get(header.target)
            if dest is not None and dest.gone:
                dest = None
            if header.kind == REQUEST and dest is not None and not header.flags & NO_REPLY:
                dest.awaited[(header.source, header.id)] = header.topic
        if dest is None and header.kind == REQUEST and not header.flags & NO_REPLY:
            missing = TransportError(f"{header.target} is not connected")
            self._hub_error(header.source, header.target, header.id, header.topic, missing)
        elif dest is None:
            log.debug("hub %s: dropping %s: target not connected", self.name, header.describe())
        return dest

    def _hub_error(self, to: str, about: str, ident: int, topic: str, exc: Exception) -> None:
        """Answer request ``ident`` of ``to`` with an error the hub itself found."""
        if to == self.name:
            with self.local._lock:
                pending = self.local._pending.get(ident)
            if pending is not None:
                self.local._finish(pending, error=exc)
            return
        header = Header(ERROR, 0, ident, about, to, topic)
        with self._lock:
            conn = self._conns.get(to)
        if conn is not None:
            body = error_body(exc, "hub")
            conn.outbox.put_frame(OutFrame(header, body, self.settings.fragment_size))

    # -- liveness --------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        interval = self.settings.heartbeat_interval
        while not self._stopping.wait(interval / 3):
            now = time.monotonic()
            self.refusals.flush(now)
            with self._lock:
                named = list(self._conns.values())
                unnamed = list(self._unnamed)
            for conn in unnamed:
                if now - conn.opened > self.settings.connect_timeout:
                    conn.close(f"no hello within {self.settings.connect_timeout:g} s")
            for conn in named:
                try:
                    conn.reassembler.expire(now)
                except ProtocolError as exc:
                    self._unregister(conn, f"protocol error: {exc}")
                    continue
                silent = now - conn.last_heard
                if not conn.blocked and silent > interval:
                    self._unregister(
                        conn,
                        f"no message for {silent:.1f} s (net.heartbeat_interval={interval:g})",
                    )
                    continue
                ping = Header(PING, 0, 0, self.name, conn.name or "", "")
                conn.outbox.put_frame(OutFrame(ping, b"", self.settings.fragment_size))

    def _event(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return

        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("hub %s: callback %s failed", self.name, fn)

        with contextlib.suppress(RuntimeError):  # stopped
            self._events.submit(run)
