"""The server job's end of every tunnel: replays each site's calls on a local service.

A workflow opens a tunnel for the duration of its work::

    upstream = GrpcUpstream("127.0.0.1:7000")          # the real service, on loopback
    ctx.tunnels.open("xgboost", upstream, sites=["site-1", "site-2"],
                     allow=("/xgboost.collective.federated.Federated/",))
    try:
        ...                                             # post tasks asking sites to connect
    finally:
        ctx.tunnels.close("xgboost")

Each site's calls arrive on the topic ``tunnel.call``; the service checks the sender is one
of the tunnel's sites and the method is allowed, then forwards the call. A call whose
``seq`` it has already answered is answered again from its record, one still running is
waited for, so a site that resends after a broken connection never makes a call twice.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ember.config import describe_timeout, setting_timeout
from ember.tunnel.calls import TOPIC, TunnelCall, TunnelError, TunnelReply

_REMEMBERED = 64  # answered calls kept per site for resends (a site resends only its last)


class Upstream(Protocol):
    """The service behind a tunnel, reached from the server's job process.

    Example, an upstream that answers every call itself (tests use ones like it)::

        class Echo:
            def forward(self, call: TunnelCall, timeout: float) -> TunnelReply:
                return TunnelReply(status=0, body=call.body)

            def close(self) -> None:
                pass
    """

    def forward(self, call: TunnelCall, timeout: float) -> TunnelReply:
        """Make ``call`` on the service within ``timeout`` s; failures become a reply with
        ``error`` set (never an exception)."""
        ...

    def close(self) -> None: ...


class Endpoint(Protocol):
    def register_handler(self, topic: str, handler: Any) -> None: ...


class _Calls:
    """One site's calls on one tunnel: answered ones and those still running. A resend of
    a running call waits on ``done`` (rare: a site resends only after a broken request), so
    a call itself costs no event of its own."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)
        self.answered: OrderedDict[int, TunnelReply] = OrderedDict()
        self.running: set[int] = set()
        self.highest = 0
        self.count = 0


@dataclass
class _Tunnel:
    upstream: Upstream
    sites: frozenset[str] | None
    allow: tuple[str, ...]
    timeout: float
    calls: dict[str, _Calls] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(c.count for c in list(self.calls.values()))


class TunnelService:
    """Every tunnel of one job, answering ``tunnel.call`` on the server's endpoint."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger(__name__)
        self._tunnels: dict[str, _Tunnel] = {}
        self._lock = threading.Lock()

    def attach(self, endpoint: Endpoint) -> None:
        endpoint.register_handler(TOPIC, self._handle)

    def open(
        self,
        name: str,
        upstream: Upstream,
        sites: Iterable[str] | None = None,
        allow: Iterable[str] = ("/",),
    ) -> None:
        """Forward the calls of ``sites`` (None: any site of the job) on tunnel ``name`` to
        ``upstream``; only methods starting with one of ``allow`` are forwarded. Each call
        is bounded by ``tunnel.call_timeout`` as the job's config has it now."""
        timeout = setting_timeout("tunnel.call_timeout")
        with self._lock:
            if name in self._tunnels:
                raise TunnelError(f"a tunnel named {name!r} is already open in this job")
            self._tunnels[name] = _Tunnel(
                upstream, None if sites is None else frozenset(sites), tuple(allow), timeout
            )
        self.log.info("tunnel %s open", name)

    def close(self, name: str) -> None:
        """Stop forwarding ``name``'s calls and close its upstream (idempotent)."""
        with self._lock:
            tunnel = self._tunnels.pop(name, None)
        if tunnel is not None:
            tunnel.upstream.close()
            self.log.info("tunnel %s closed after %d calls", name, tunnel.count)

    def close_all(self) -> None:
        for name in list(self._tunnels):
            self.close(name)

    def calls(self, name: str) -> int:
        """How many calls ``name`` has forwarded (0 for a closed tunnel)."""
        tunnel = self._tunnels.get(name)
        return tunnel.count if tunnel is not None else 0

    def _handle(self, sender: str, payload: Any) -> dict[str, Any]:
        try:
            call = TunnelCall.from_wire(payload)
        except TunnelError as exc:
            return TunnelReply(status=-1, error=f"refused: {exc}").to_wire()
        return self.forward(sender, call).to_wire()

    def forward(self, sender: str, call: TunnelCall) -> TunnelReply:
        """Answer ``sender``'s ``call`` (at most once per ``seq``)."""
        tunnel = self._tunnels.get(call.tunnel)
        if tunnel is None:
            return TunnelReply(
                status=-1,
                error=f"no tunnel named {call.tunnel!r} is open in this job (it opens while "
                "its workflow runs)",
            )
        if tunnel.sites is not None and sender not in tunnel.sites:
            return TunnelReply(
                status=-1, error=f"{sender} is not one of tunnel {call.tunnel!r}'s sites"
            )
        if not call.method.startswith(tunnel.allow):
            self.log.warning("tunnel %s refused %s from %s", call.tunnel, call.method, sender)
            return TunnelReply(
                status=-1,
                error=f"tunnel {call.tunnel!r} does not forward {call.method!r} (it forwards "
                f"only {', '.join(tunnel.allow)})",
            )
        calls = tunnel.calls.get(sender)
        if calls is None:
            calls = tunnel.calls.setdefault(sender, _Calls())
        timeout = tunnel.timeout
        seq = call.seq
        with calls.lock:
            if seq in calls.answered:
                return calls.answered[seq]
            if seq in calls.running:  # a resend of a call still running: wait for it
                if not calls.done.wait_for(lambda: seq not in calls.running, timeout):
                    return TunnelReply(
                        status=-1,
                        error=f"call {seq} did not finish within {describe_timeout(timeout)}",
                    )
                return calls.answered.get(seq) or TunnelReply(status=-1, error="call lost")
            if seq <= calls.highest - _REMEMBERED:
                return TunnelReply(status=-1, error=f"call {seq} is too old to answer")
            calls.running.add(seq)
        try:
            reply = tunnel.upstream.forward(call, timeout)
        except Exception as exc:  # an upstream must not fail the handler
            reply = TunnelReply(status=-1, error=f"{type(exc).__name__}: {exc}")
        with calls.lock:
            calls.answered[seq] = reply
            while len(calls.answered) > _REMEMBERED:
                calls.answered.popitem(last=False)
            calls.highest = max(calls.highest, seq)
            calls.running.discard(seq)
            calls.count += 1
            calls.done.notify_all()
        return reply
