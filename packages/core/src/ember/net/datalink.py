"""Direct data links: downloads between a site's job process and the server's job process
over their own TLS connections, beside the hub.

Every message goes through the hub, so each byte of a model pulled that way crosses two TLS
connections and the hub's process. A data link is a plain TLS socket straight from a site's
job process (which dials out: a site still opens no port) to a port the server's job process
listens on, and it carries download traffic only. A pull asks for an item from an offset and
the owner streams the rest of it back in one go: no request per chunk, and no CRC, since TLS
authenticates every record. A site opens two kinds of connection: *pull* connections, on
which it asks the server for items (the global model), and *serve* connections, on which the
server asks the site (its results). A connection serves one request at a time.

Admission: the site asks the server's job process over the hub (``stream.link``: the hub has
already checked who is asking) and gets the port and a fresh token for its node name; it
presents both when it opens a connection, and with ``mtls`` a certificate signed by the
project CA that names its site. The site checks the server's certificate as it does the
hub's. With ``clear`` security there are no data links.

Whatever a link cannot do goes through the hub, with the same result: no listener (links off,
no free port in ``net.data_link_ports``), a refused or broken connection (the pull goes on
from the byte where the link stopped), every connection busy.
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import logging
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from ember.config import get_setting
from ember.net.errors import TransportError, UnknownTopicError
from ember.net.messenger import RemoteError
from ember.net.tls import TlsFiles
from ember.streaming.errors import LinkBroken, StreamingError
from ember.streaming.fetcher import DONE, MANIFEST

log = logging.getLogger(__name__)

LINK_TOPIC = "stream.link"
"""The hub topic on which a site asks the server's job process for a data link."""
VERSION = 1

_LEN = struct.Struct("<I")
_MAX_HEADER = 1 << 20
_SLICE = 8 << 20  # how much an owner reads and sends at once
_BUFFER = 1 << 20  # a receiver's buffer between the socket and a sink that has no buffer
_HEAD = 64 << 10  # what a sink with a buffer gets first (its header, to make the buffer)
_DIRECT = 8 << 20  # bytes received into a sink's own buffer between progress reports
_CALLS = (MANIFEST, DONE)  # the small requests a link answers besides reads
_MAX_HANDSHAKES = 64  # connections a listener admits at once (each within net.connect_timeout)
_RETRY_AFTER = 1.0  # seconds before a site asks an unreachable peer for a link again
_ERRORS = (OSError, ValueError, msgpack.UnpackException)  # ssl.SSLError is an OSError

Sink = Callable[[int, memoryview], None]


class Serving(Protocol):
    """A node's download service as a link serves it (:class:`ember.streaming.StreamNode`)."""

    def pieces(
        self, sender: str, ref: str, item: str, offset: int, piece: int
    ) -> tuple[int, Iterator[bytes | bytearray | memoryview]]: ...

    def handle(self, sender: str, topic: str, payload: Any) -> Any: ...


class Node(Protocol):
    """The hub node of this process (:class:`ember.net.NetNode` or ``hub.local``)."""

    name: str

    def register_handler(self, topic: str, handler: Any, *, body_type: type = bytes) -> None: ...

    def request(self, target: str, topic: str, body: Any, timeout: float | None) -> Any: ...


@dataclass(frozen=True)
class LinkSettings:
    """The ``net.data_link*`` settings and the timeouts a link uses."""

    enabled: bool
    ports: tuple[int, int]  # (0, 0): any free port
    connections: int
    connect_timeout: float
    request_timeout: float

    @classmethod
    def current(cls) -> LinkSettings:
        return cls(
            enabled=bool(get_setting("net.data_links")),
            ports=parse_ports(str(get_setting("net.data_link_ports"))),
            connections=int(get_setting("net.data_link_connections")),
            connect_timeout=float(get_setting("net.connect_timeout")),
            request_timeout=float(get_setting("streaming.per_request_timeout")),
        )


def parse_ports(text: str) -> tuple[int, int]:
    """``""`` -> any free port ``(0, 0)``; ``"41000"`` or ``"41000-41099"`` -> that range."""
    text = text.strip()
    if not text:
        return (0, 0)
    low, _, high = text.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        first, last = -1, -1
    if not 1 <= first <= last <= 65535:
        raise TransportError(
            f"net.data_link_ports must be a port or a range like 41000-41099, not {text!r}"
        )
    return (first, last)


# -- framing: a 4-byte length, a msgpack header, then the header's "n" raw bytes ----------------
def _send(sock: ssl.SSLSocket, header: dict[str, Any]) -> None:
    head = msgpack.packb(header)
    sock.sendall(_LEN.pack(len(head)) + head)


def _recv_exact(sock: ssl.SSLSocket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise LinkBroken("the connection was closed")
        got += k
    return buf


def _recv_header(sock: ssl.SSLSocket) -> dict[str, Any]:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    if n > _MAX_HEADER:
        raise LinkBroken(f"a header of {n} bytes is not plausible")
    head = msgpack.unpackb(_recv_exact(sock, n))
    if not isinstance(head, dict):
        raise LinkBroken("malformed header")
    return head


class Connection:
    """One TLS connection of a data link, used by one thread at a time (a TLS socket must
    not be read and written from two threads at once)."""

    def __init__(self, sock: ssl.SSLSocket, peer: str, role: str, timeout: float) -> None:
        self.sock = sock
        self.peer = peer  # the node at the other end
        self.role = role  # "pull": the dialer asks; "serve": the listener asks
        self.timeout = timeout
        self._buffer: bytearray | None = None
        self._at = 0  # how far the current read got
        self.closed = False

    def call(self, topic: str, payload: dict[str, Any]) -> Any:
        """The peer's reply to a small download request (``stream.manifest``/``done``)."""
        try:
            _send(self.sock, {"op": "call", "topic": topic, "payload": payload})
            head = _recv_header(self.sock)
        except _ERRORS as exc:
            raise LinkBroken(f"{type(exc).__name__}: {exc}") from exc
        if "reply" not in head:
            raise LinkBroken("malformed reply")
        return head["reply"]

    def read(
        self,
        ref_id: str,
        item: str,
        offset: int,
        sink: Sink,
        progress: Callable[[int, int], None] | None = None,
        length: int | None = None,
    ) -> int:
        """Stream ``item`` from ``offset`` to its end (or ``length`` bytes of it) into
        ``sink(offset, data)`` (``data`` is valid during the call only; a sink with a
        ``buffer(offset)`` method that returns a writable view gets the bytes received
        straight into it instead). Returns the item's size. StreamingError: the owner said
        no (its reason); LinkBroken: the connection failed, with how far it got. Any failure
        after the owner said yes closes the connection (the rest of the stream is on it)."""
        request = {"op": "read", "ref": ref_id, "item": item, "offset": offset}
        if length is not None:
            request["length"] = length
        try:
            _send(self.sock, request)
            head = _recv_header(self.sock)
        except _ERRORS as exc:
            self.close()
            raise LinkBroken(f"{type(exc).__name__}: {exc}", offset) from exc
        except LinkBroken:
            self.close()
            raise
        if "error" in head:
            raise StreamingError(str(head["error"]))
        size, n = head.get("size"), head.get("n")
        if not isinstance(size, int) or not isinstance(n, int) or n != _span(size, offset, length):
            self.close()
            raise LinkBroken("malformed read header", offset)
        end = offset + n
        try:
            self._stream(offset, end, sink, progress)
        except LinkBroken as exc:
            exc.size = size
            raise
        finally:
            if self._at != end:
                self.close()
        return size

    def _stream(
        self, at: int, end: int, sink: Sink, progress: Callable[[int, int], None] | None
    ) -> None:
        if self._buffer is None:
            self._buffer = bytearray(_BUFFER)
        bounce = memoryview(self._buffer)
        direct = getattr(sink, "buffer", None)
        self._at = at
        try:
            while at < end:
                dest = direct(at) if direct is not None else None
                if dest is not None:
                    target = dest[: min(_DIRECT, end - at)]
                else:  # a sink waiting for a header gets a small piece first
                    target = bounce[: min(_HEAD if direct is not None else _BUFFER, end - at)]
                want, got = len(target), 0
                while got < want:
                    k = self.sock.recv_into(target[got:], want - got)
                    if not k:
                        raise LinkBroken("the connection was closed", at)
                    got += k
                if dest is None:
                    sink(at, target)
                at += want
                self._at = at
                if progress is not None:
                    progress(at, end)
        except _ERRORS as exc:
            raise LinkBroken(f"{type(exc).__name__}: {exc}", at) from exc

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


def _answer(conn: Connection, request: dict[str, Any], serving: Serving) -> None:
    """Answer one request on ``conn`` (an error mid-stream closes the connection: the
    receiver goes on through the hub)."""
    sock, peer = conn.sock, conn.peer
    op = request.get("op")
    if op == "call":
        topic = request.get("topic")
        if topic not in _CALLS:
            _send(sock, {"error": f"a data link does not answer {topic!r}"})
            return
        _send(sock, {"reply": serving.handle(peer, str(topic), request.get("payload"))})
        return
    if op != "read":
        _send(sock, {"error": f"unknown data link request {op!r}"})
        return
    ref, item, offset = request.get("ref"), request.get("item"), request.get("offset")
    length = request.get("length")
    if (
        not isinstance(ref, str)
        or not isinstance(item, str)
        or not isinstance(offset, int)
        or not (length is None or (isinstance(length, int) and length >= 0))
    ):
        _send(sock, {"error": "malformed read request"})
        return
    try:
        size, pieces = serving.pieces(peer, ref, item, offset, _SLICE)
    except StreamingError as exc:
        _send(sock, {"error": str(exc)})
        return
    n = _span(size, offset, length)
    _send(sock, {"size": size, "n": n})
    left = n
    for data in pieces if left else ():
        piece = memoryview(data).cast("B")[:left]
        sock.sendall(piece)
        left -= len(piece)
        if not left:
            break
    if left:
        raise LinkBroken(f"item {item} of {ref} ended at byte {offset + n - left} of {size}")


def _span(size: int, offset: int, length: int | None) -> int:
    """How many bytes a read of ``length`` (None: to the end) from ``offset`` gets."""
    rest = max(size - offset, 0)
    return rest if length is None else min(length, rest)


def _serve(conn: Connection, serving: Serving, on_end: Callable[[Connection], None]) -> None:
    """Answer the peer's requests on ``conn`` until it closes."""
    try:
        while not conn.closed:
            conn.sock.settimeout(None)  # idle until the next request
            try:
                request = _recv_header(conn.sock)
            except (LinkBroken, *_ERRORS):
                return
            conn.sock.settimeout(conn.timeout)
            try:
                _answer(conn, request, serving)
            except (LinkBroken, StreamingError, *_ERRORS) as exc:
                if not conn.closed:
                    log.info("data link to %s: dropped while answering: %s", conn.peer, exc)
                return
    finally:
        conn.close()
        on_end(conn)


class _Peer:
    """What a dialing node knows of one owner's listener."""

    def __init__(self) -> None:
        self.state = "setting"  # setting | ready | none
        self.retry_at: float | None = None  # when a failed set-up may be tried again
        self.ready = threading.Event()
        self.port = 0
        self.token = ""
        self.pulls = 0  # pull connections open to it


class DataLinks:
    """This process's data links: a listener (the server's job process, :meth:`listen`) or
    a dialer (a site's job process, :meth:`dial`), and the idle connections on which this
    process pulls, by peer. The fetcher of the node's download service uses them."""

    def __init__(self, node: Node, tls: TlsFiles | None, settings: LinkSettings) -> None:
        self.node = node
        self.tls = tls
        self.settings = settings
        self.serving: Serving | None = None
        self._lock = threading.Lock()
        self._idle: dict[str, list[Connection]] = collections.defaultdict(list)
        self._open: set[Connection] = set()
        self._peers: dict[str, _Peer] = {}
        self._tokens: dict[str, str] = {}
        self._listener: socket.socket | None = None
        self._dial_host: str | None = None
        self._server_name: str | None = None
        self._closed = False
        self._admitting = threading.BoundedSemaphore(_MAX_HANDSHAKES)

    @property
    def usable(self) -> bool:
        """Whether links may be used at all (on, and the connections are TLS)."""
        return self.settings.enabled and self.tls is not None and self.tls.uses_tls

    def serve(self, serving: Serving) -> None:
        """Answer the peers' requests from ``serving`` (this node's download service)."""
        self.serving = serving

    # -- the listening side (the server's job process) -----------------------------------------
    def listen(
        self, host: str, admit: Callable[[str], str | None], cert_name: Callable[[str], str]
    ) -> int:
        """Listen for links on ``host`` (a port of ``net.data_link_ports``); returns the port,
        0 when links are off or no port is free (then everything goes through the hub).
        ``admit(node)``: why ``node`` may not have a link (None: it may); ``cert_name(node)``:
        the common name its certificate must have with ``mtls``."""
        if not self.usable:
            return 0
        first, last = self.settings.ports
        listener = None
        for port in range(first, last + 1):
            try:
                listener = _bind(host, port)
                break
            except OSError as exc:
                problem = exc
        if listener is None:
            log.warning(
                "%s: no data link port free in %s (%s); downloads go through the hub",
                self.node.name,
                f"{first}-{last}",
                problem,
            )
            return 0
        self._listener = listener
        self._admit, self._cert_name = admit, cert_name
        self._server_ctx = _server_context(self.tls)  # type: ignore[arg-type]
        port = int(listener.getsockname()[1])
        self.node.register_handler(LINK_TOPIC, self._offer, body_type=bytes)
        threading.Thread(
            target=self._accept, daemon=True, name=f"ember-links-{self.node.name}"
        ).start()
        return port

    def _offer(self, sender: str, body: bytes) -> bytes:
        """A node asks, over the hub, for a link: its port and a fresh token (or none)."""
        if self._listener is None or self._admit(sender) is not None:
            refused: bytes = msgpack.packb({"v": VERSION})  # msgpack has no type hints
            return refused
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[sender] = token
        port = self._listener.getsockname()[1]
        offer: bytes = msgpack.packb({"v": VERSION, "port": port, "token": token})
        return offer

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._closed:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            if not self._admitting.acquire(blocking=False):
                raw.close()  # too many connections still in their handshake
                continue
            threading.Thread(
                target=self._admit_connection,
                args=(raw,),
                daemon=True,
                name=f"ember-link-in-{self.node.name}",
            ).start()

    def _admit_connection(self, raw: socket.socket) -> None:
        try:
            self._handshake(raw)
        finally:
            self._admitting.release()

    def _handshake(self, raw: socket.socket) -> None:
        raw.settimeout(self.settings.connect_timeout)
        _tune(raw)
        try:
            sock = self._server_ctx.wrap_socket(raw, server_side=True)
        except _ERRORS as exc:
            log.warning("%s: data link handshake refused: %s", self.node.name, exc)
            raw.close()
            return
        try:
            hello = _recv_header(sock)
            node, role = str(hello.get("node", "")), hello.get("role")
            why = self._refusal(node, hello.get("token"), role, sock)
            if why is not None:
                log.warning("%s: data link from %r refused: %s", self.node.name, node, why)
                _send(sock, {"error": why})
                sock.close()
                return
            _send(sock, {"ok": True})
        except (LinkBroken, *_ERRORS) as exc:
            log.warning("%s: data link hello failed: %s", self.node.name, exc)
            sock.close()
            return
        conn = Connection(sock, node, str(role), self.settings.request_timeout)
        if not self._track(conn):
            return
        if role == "serve":
            sock.settimeout(self.settings.request_timeout)
            self.release(conn, True)
        else:
            self._serve_on(conn)

    def _refusal(self, node: str, token: Any, role: Any, sock: ssl.SSLSocket) -> str | None:
        if role not in ("pull", "serve"):
            return f"unknown role {role!r}"
        if (why := self._admit(node)) is not None:
            return why
        with self._lock:
            expected = self._tokens.get(node)
        if (
            expected is None
            or not isinstance(token, str)
            or not hmac.compare_digest(expected, token)
        ):
            return "no valid token for this node (ask for one over the hub: stream.link)"
        if self.tls is not None and self.tls.security == "mtls":
            name = _common_name(sock.getpeercert())
            if name != self._cert_name(node):
                return f"certificate of {name!r} cannot open a link for {node!r}"
        with self._lock:
            count = sum(1 for c in self._open if c.peer == node)
        if count >= 2 * self.settings.connections:
            return f"{node} already has {count} data link connections"
        return None

    # -- the dialing side (a site's job process) -------------------------------------------------
    def dial(self, host: str, server_name: str | None = None) -> None:
        """Open links to peers at ``host`` that offer them (checking their certificate
        against ``server_name`` or ``host``), when :meth:`prepare` or :meth:`acquire` first
        names them."""
        if self.usable:
            self._dial_host = host
            self._server_name = server_name or host
            self._client_ctx = _client_context(self.tls)  # type: ignore[arg-type]

    def prepare(self, peer: str) -> None:
        """Start setting up links to ``peer`` in the background (once; cheap afterwards),
        so that ``peer`` finds serve connections when it pulls from this node."""
        if self._dial_host is None or self._closed:
            return
        with self._lock:
            known = self._peers.get(peer)
            if known is not None and (known.retry_at is None or time.monotonic() < known.retry_at):
                return
            self._peers[peer] = state = _Peer()
        threading.Thread(
            target=self._set_up,
            args=(peer, state),
            daemon=True,
            name=f"ember-link-setup-{self.node.name}",
        ).start()

    def _set_up(self, peer: str, state: _Peer) -> None:
        try:
            reply = msgpack.unpackb(
                self.node.request(
                    peer, LINK_TOPIC, msgpack.packb({"v": VERSION}), self.settings.connect_timeout
                )
            )
            if not isinstance(reply, dict) or not reply.get("port"):
                state.state = "none"
                return
            state.port, state.token = int(reply["port"]), str(reply["token"])
            for _ in range(self.settings.connections):
                conn = self._connect(peer, state, "serve")
                if self._track(conn):
                    self._serve_on(conn)
            state.state = "ready"
        except (UnknownTopicError, RemoteError) as exc:  # the peer offers no links
            state.state = "none"
            log.info("%s: no data link to %s (%s); using the hub", self.node.name, peer, exc)
        except (TransportError, TimeoutError) as exc:  # not reachable yet: try again later
            state.state = "none"
            state.retry_at = time.monotonic() + _RETRY_AFTER
            log.info("%s: no data link to %s yet (%s)", self.node.name, peer, exc)
        except Exception as exc:  # refused, handshake failed: the hub still works
            state.state = "none"
            log.warning("%s: data link to %s failed: %s; using the hub", self.node.name, peer, exc)
        finally:
            state.ready.set()

    def _connect(self, peer: str, state: _Peer, role: str) -> Connection:
        assert self._dial_host is not None
        timeout = self.settings.connect_timeout
        raw = socket.create_connection((self._dial_host, state.port), timeout)
        try:
            _tune(raw)
            sock = self._client_ctx.wrap_socket(raw, server_hostname=self._server_name)
            _send(sock, {"v": VERSION, "node": self.node.name, "token": state.token, "role": role})
            answer = _recv_header(sock)
        except BaseException:
            raw.close()
            raise
        if not answer.get("ok"):
            sock.close()
            raise TransportError(f"{peer} refused a data link: {answer.get('error')}")
        sock.settimeout(self.settings.request_timeout)
        return Connection(sock, peer, role, self.settings.request_timeout)

    # -- both sides ---------------------------------------------------------------------------
    def _track(self, conn: Connection) -> bool:
        with self._lock:
            if self._closed:
                conn.close()
                return False
            self._open.add(conn)
            return True

    def _untrack(self, conn: Connection) -> None:
        with self._lock:
            self._open.discard(conn)

    def _serve_on(self, conn: Connection) -> None:
        serving = self.serving
        if serving is None:
            conn.close()
            self._untrack(conn)
            return
        threading.Thread(
            target=_serve,
            args=(conn, serving, self._untrack),
            daemon=True,
            name=f"ember-link-serve-{conn.peer}",
        ).start()

    def acquire(self, peer: str) -> Connection | None:
        """A free connection on which to pull from ``peer``, or None (then use the hub)."""
        with self._lock:
            idle = self._idle.get(peer)
            if idle:
                return idle.pop()
            state = self._peers.get(peer)
        if self._dial_host is None or self._closed:
            return None
        if state is None:
            self.prepare(peer)
            with self._lock:
                state = self._peers[peer]
        if not state.ready.wait(self.settings.connect_timeout) or state.state != "ready":
            return None
        with self._lock:
            if state.pulls >= self.settings.connections:
                return None
            state.pulls += 1
        try:
            conn = self._connect(peer, state, "pull")
        except Exception as exc:
            with self._lock:
                state.pulls -= 1
            log.info(
                "%s: data link to %s not opened (%s); using the hub", self.node.name, peer, exc
            )
            return None
        if not self._track(conn):
            return None
        return conn

    def release(self, conn: Connection, ok: bool) -> None:
        """Give back a connection from :meth:`acquire`; ``ok=False``: it failed, close it."""
        with self._lock:
            if ok and not conn.closed and not self._closed:
                self._idle[conn.peer].append(conn)
                return
            self._open.discard(conn)
            state = self._peers.get(conn.peer) if conn.role == "pull" else None
            if state is not None:
                state.pulls -= 1
        conn.close()

    def close(self) -> None:
        """Stop listening and close every connection (threads blocked on them return)."""
        with self._lock:
            self._closed = True
            conns = list(self._open)
            self._open.clear()
            self._idle.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        for conn in conns:
            conn.close()


def _tune(sock: socket.socket) -> None:
    """Small requests go out at once (no Nagle delay)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host`` (``::``: every interface, IPv4 too where possible)."""
    if host == "::" and socket.has_dualstack_ipv6():
        return socket.create_server(
            ("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64
        )
    return socket.create_server(("" if host == "::" else host, port), backlog=64)


def _server_context(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.security == "mtls":
        ctx.load_verify_locations(str(tls.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_context(tls: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.security == "mtls":
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    return ctx


def _common_name(cert: dict[str, Any] | None) -> str | None:
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
