"""What travels through a tunnel: one local call and its reply, as FOBS-native dicts.

A tunnel carries another program's request/reply protocol (XGBoost's federated gRPC
service, Flower's Fleet API over HTTP) between a loopback endpoint in a site's job process
and a loopback service beside the server's job process. Each local call becomes one
:class:`TunnelCall`, sent as one Ember request; the server replays it on the service and
answers with a :class:`TunnelReply`. Bodies and headers travel byte for byte.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

from ember.errors import EmberError

TOPIC = "tunnel.call"
"""The server job's topic for tunnelled calls."""


class TunnelError(EmberError, RuntimeError):
    """A tunnelled call could not be made: no such tunnel, a refused method, a malformed
    call, or the service behind the tunnel failed or did not answer in time."""


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TunnelCall:
    """One call a local client made on a site's tunnel endpoint.

    ``seq`` numbers the calls of one site on one tunnel from 1, in the order the endpoint
    received them; the server answers a repeated ``seq`` from its record instead of
    replaying it (at most once). ``method`` is the gRPC method path
    (``/pkg.Service/Method``) or the HTTP path; ``headers`` are gRPC metadata or HTTP
    headers, forwarded unchanged.
    """

    tunnel: str
    seq: int
    method: str
    body: bytes
    headers: Headers = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "tunnel": self.tunnel,
            "seq": self.seq,
            "method": self.method,
            "body": self.body,
            "headers": [list(h) for h in self.headers],
        }

    @classmethod
    def from_wire(cls, data: Any) -> TunnelCall:
        """Check and build a call received from a site (anything else is a TunnelError)."""
        if not isinstance(data, dict):
            raise TunnelError(f"a tunnel call must be a dict, got {type(data).__name__}")
        tunnel, seq, method, body = (data.get(k) for k in ("tunnel", "seq", "method", "body"))
        if not isinstance(tunnel, str) or not tunnel:
            raise TunnelError("a tunnel call names no tunnel")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise TunnelError(f"a tunnel call's seq must be an integer >= 1, got {seq!r}")
        if not isinstance(method, str) or not method.startswith("/"):
            raise TunnelError(f"a tunnel call's method must be a path, got {method!r}")
        if not isinstance(body, bytes):
            raise TunnelError("a tunnel call's body must be bytes")
        return cls(tunnel, seq, method, body, _headers(data.get("headers", [])))


@dataclass(frozen=True)
class TunnelReply:
    """The service's answer: ``status`` is the gRPC status code (0: OK) or the HTTP status;
    ``error`` is set when the call never reached the service or it failed (then the local
    client sees the call fail with that message)."""

    status: int
    body: bytes = b""
    headers: Headers = ()
    error: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "body": self.body,
            "headers": [list(h) for h in self.headers],
            "error": self.error,
        }

    @classmethod
    def from_wire(cls, data: Any) -> TunnelReply:
        if not isinstance(data, dict):
            raise TunnelError(f"a tunnel reply must be a dict, got {type(data).__name__}")
        status, body, error = data.get("status"), data.get("body", b""), data.get("error", "")
        if not isinstance(status, int) or not isinstance(body, bytes) or not isinstance(error, str):
            raise TunnelError("malformed tunnel reply")
        return cls(status, body, _headers(data.get("headers", [])), error)


def _headers(raw: Any) -> Headers:
    if not raw and isinstance(raw, list | tuple):
        return ()
    if not isinstance(raw, list | tuple) or not all(
        isinstance(h, list | tuple) and len(h) == 2 and all(isinstance(p, str) for p in h)
        for h in raw
    ):
        raise TunnelError("tunnel headers must be a list of [name, value] strings")
    return tuple((str(k), str(v)) for k, v in raw)


class CallNumbers:
    """The ``seq`` of one endpoint's calls: 1, 2, ... in the order they arrive."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            return next(self._counter)
