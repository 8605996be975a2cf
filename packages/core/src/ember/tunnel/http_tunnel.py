"""Tunnels for unary HTTP/1.1 services (Flower's Fleet API): a loopback HTTP server in the
site's job process that accepts POSTs to allowed path prefixes, and the upstream that
replays each call on the real service from the server's job process.

Both sides treat bodies as opaque bytes: a request's and a reply's body, and their
end-to-end headers (``content-type``, Flower's ``flwr-*``), cross the tunnel exactly as the
client and the service wrote them. Hop-by-hop headers (``connection``, ``content-length``,
``host``, ...) are each hop's own and never copied.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from ember.tunnel.calls import CallNumbers, Headers, TunnelCall, TunnelError, TunnelReply

if TYPE_CHECKING:
    from ember.tunnel.tls import LoopbackTls

Send = Callable[[TunnelCall], TunnelReply]
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "date",
        "host",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_MAX_BODY = 2**31  # a Content-Length above this is refused (2 GiB)


def end_to_end(headers: list[tuple[str, str]]) -> Headers:
    """``headers`` without the hop-by-hop ones, names lower-cased, values unchanged."""
    return tuple((k.lower(), v) for k, v in headers if k.lower() not in _HOP_BY_HOP)


class HttpTunnelEndpoint:
    """A loopback HTTP/1.1 server whose POSTs go through the tunnel ``tunnel`` (``send``).

    ``allow``: path prefixes served (``("/v1/fleet/",)`` for Flower); a POST to any other
    path is refused here with 403, any other method with 405, before anything is sent.
    Calls are numbered in the order they arrive (``seq``); concurrent requests stay
    concurrent (a thread each). A tunnel failure (refused at the server, no tunnel, timed
    out) answers 502 with the reason as a plain-text body.
    """

    protocol = "http"
    tls: LoopbackTls | None = None  # plain HTTP on loopback (a TLS spec is refused)

    def __init__(self, tunnel: str, send: Send, allow: tuple[str, ...]) -> None:
        self.tunnel = tunnel
        self._send = send
        self.allow = allow
        self._numbers = CallNumbers()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            daemon=True,
            name=f"ember-tunnel-{tunnel}",
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: what the local client connects to (over plain HTTP)."""
        return f"127.0.0.1:{self.port}"

    def next_seq(self) -> int:
        return self._numbers.next()

    def handle(self, path: str, body: bytes, headers: Headers) -> TunnelReply:
        return self._send(TunnelCall(self.tunnel, self.next_seq(), path, body, headers))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(endpoint: HttpTunnelEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection for many calls

        def do_POST(self) -> None:
            path = self.path
            try:
                length = int(self.headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY:
                self._answer(400, b"a POST needs a valid content-length")
                return
            body = self.rfile.read(length) if length else b""
            if not path.startswith(endpoint.allow):
                self._answer(
                    403,
                    f"tunnel {endpoint.tunnel!r} does not forward {path} (it forwards only "
                    f"{', '.join(endpoint.allow)})".encode(),
                )
                return
            reply = endpoint.handle(path, body, end_to_end(list(self.headers.items())))
            if reply.error or reply.status < 100:
                self._answer(502, (reply.error or f"status {reply.status}").encode())
                return
            self._answer(reply.status, reply.body, reply.headers)

        def _refuse(self) -> None:
            self.close_connection = True
            self._answer(405, f"tunnel {endpoint.tunnel!r} forwards only POST".encode())

        do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse

        def _answer(self, status: int, body: bytes, headers: Headers = ()) -> None:
            self.send_response(status)
            if not headers:
                headers = (("content-type", "text/plain; charset=utf-8"),)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the site's log has the tunnel's own records

    return Handler


class HttpUpstream:
    """Replays tunnelled calls on the HTTP service at ``base_url`` (``http://127.0.0.1:P``),
    as POSTs of the same path (below the URL's own path), headers and body.

    Connections are kept alive and reused (one per concurrent call, stdlib
    ``http.client``); a reused connection the service had already closed is replaced and
    the call made once on the new one (nothing of it had reached the service).
    """

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TunnelError(f"an HTTP upstream needs an http(s):// URL, got {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def forward(self, call: TunnelCall, timeout: float) -> TunnelReply:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        if conn is None:
            conn = self._connect(timeout)
        while True:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(
                    "POST", self.prefix + call.method, body=call.body, headers=dict(call.headers)
                )
                response = conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if reused:  # a kept-alive connection the service had closed: try a fresh one
                    reused, conn = False, self._connect(timeout)
                    continue
                return TunnelReply(status=-1, error=f"{call.method}: {type(exc).__name__}: {exc}")
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                return TunnelReply(status=-1, error=f"{call.method}: {type(exc).__name__}: {exc}")
            break
        reply = TunnelReply(
            status=response.status, body=body, headers=end_to_end(response.getheaders())
        )
        if response.will_close:
            conn.close()
        else:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)
        return reply

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
