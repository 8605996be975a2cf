"""A site's end of the job's tunnels: loopback endpoints opened when a task asks for one.

A workflow asks a site to connect through a tunnel by putting ``meta["tunnel"] =
{"name": ..., "protocol": "grpc" | "http", "allow": [...]}`` in a task; the job's client
app sets ``site_workflow`` to :class:`TunnelSiteLink`, which opens that endpoint on
loopback (once per job and name) and writes its address into the task as
``meta["tunnel_address"]`` before the script sees the task. Two optional keys keep other
local users' processes off a gRPC endpoint: ``"tls": True`` (mutual TLS with throw-away
certificates, paths in ``meta["tunnel_tls"]``) or ``"unix_socket": True`` (a Unix domain
socket only the site's user can open, address ``unix:<digits>`` relative to the site folder,
the script's working directory: as safe for this purpose, without TLS's cost on every
byte of a collective). The script points the local
client (an XGBoost worker, a Flower SuperNode) at that address. The site opens no port
to the network: every call leaves the site as an Ember request to the server.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ember.client.link import SERVER, ServerLink
from ember.common.messages import MetricRecord, Task, TaskResult
from ember.config import describe_setting, get_setting, setting_timeout
from ember.tunnel.calls import TOPIC, TunnelCall, TunnelError, TunnelReply

if TYPE_CHECKING:
    from ember.tunnel.tls import LoopbackTls

TUNNEL_META = "tunnel"
"""Task meta key: the tunnel the task's script must connect through."""
ADDRESS_META = "tunnel_address"
"""Task meta key the site fills in: the loopback address of its endpoint."""
TLS_META = "tunnel_tls"
"""Task meta key the site fills in when the tunnel asks for ``"tls": True``: the paths of
the endpoint's certificate and of the client key and certificate the local client presents
(``{"server_cert", "client_key", "client_cert"}``)."""

log = logging.getLogger(__name__)


class TunnelEndpoint(Protocol):
    """A loopback server in the site's job process for one protocol."""

    protocol: str
    tls: LoopbackTls | None

    @property
    def address(self) -> str: ...

    def close(self) -> None: ...


EndpointFactory = Callable[..., Any]


def _grpc(
    name: str,
    send: Callable[[TunnelCall], TunnelReply],
    allow: tuple[str, ...],
    tls: LoopbackTls | None = None,
    unix_socket: Path | None = None,
) -> TunnelEndpoint:
    from ember.tunnel.grpc_tunnel import GrpcTunnelEndpoint

    return GrpcTunnelEndpoint(name, send, allow, tls=tls, unix_socket=unix_socket)


def _http(
    name: str,
    send: Callable[[TunnelCall], TunnelReply],
    allow: tuple[str, ...],
    tls: LoopbackTls | None = None,
    unix_socket: Path | None = None,
) -> TunnelEndpoint:
    from ember.tunnel.http_tunnel import HttpTunnelEndpoint

    if tls is not None or unix_socket is not None:
        raise TunnelError(f"tunnel {name!r}: the HTTP endpoint serves plain HTTP on loopback only")
    return HttpTunnelEndpoint(name, send, allow)


ENDPOINTS: dict[str, EndpointFactory] = {"grpc": _grpc, "http": _http}
"""Endpoint factories by protocol: ``factory(name, send, allow)``, and ``tls=LoopbackTls``
or ``unix_socket=Path`` when the tunnel asks for it (a protocol without it refuses)."""


class Requester(Protocol):
    def request(self, peer: str, topic: str, payload: Any, timeout: float) -> Any: ...


def sender(requester: Requester) -> Callable[[TunnelCall], TunnelReply]:
    """``send(call) -> reply`` through ``requester`` (a site's :class:`PeerLink`), resending
    the same call (same ``seq``: the server answers it once) after a transport failure, up
    to ``tunnel.retries`` times. Both settings are read now, in the job's config (calls
    arrive on the endpoint's own threads)."""
    timeout = setting_timeout("tunnel.call_timeout")
    retries = int(get_setting("tunnel.retries"))
    retries_said = describe_setting("tunnel.retries")

    def send(call: TunnelCall) -> TunnelReply:
        delay = 0.05
        for attempt in range(retries + 1):
            try:
                return TunnelReply.from_wire(
                    requester.request(SERVER, TOPIC, call.to_wire(), timeout)
                )
            except TunnelError as exc:
                return TunnelReply(status=-1, error=str(exc))
            except Exception as exc:
                if attempt == retries:
                    return TunnelReply(
                        status=-1,
                        error=f"tunnel {call.tunnel!r}: call {call.seq} ({call.method}) failed "
                        f"after {retries + 1} tries ({retries_said}): {exc}",
                    )
                log.warning("tunnel %s: call %d failed (%s); resending", call.tunnel, call.seq, exc)
                time.sleep(delay)  # back-off between resends of a failed request
                delay = min(delay * 2, 1.0)
        raise AssertionError  # pragma: no cover

    return send


class TunnelSiteLink:
    """The site workflow of a tunnelled job (see the module docstring).

    Built by the site runner as ``TunnelSiteLink(inner, peers=..., site=..., ...)``; every
    other ServerLink call is passed to ``inner`` unchanged.
    """

    #: filters cannot apply: the framework's own traffic (Flower, XGBoost) crosses the
    #: tunnel as opaque calls; a site with client filters (the job's or its privacy
    #: policy's) refuses the job instead of letting data pass unfiltered
    sends_around_filters = True

    def __init__(
        self,
        inner: ServerLink,
        peers: Requester,
        site: str,
        site_dir: Path | str | None = None,
        **_: Any,
    ) -> None:
        self.inner = inner
        self.site = site
        self.site_dir = Path(site_dir) if site_dir is not None else None
        self._private_dirs: list[Path] = []
        self._links: list[Path] = []
        self._send = sender(peers)
        self._endpoints: dict[str, TunnelEndpoint] = {}
        self._lock = threading.Lock()

    def endpoint(self, spec: Any) -> TunnelEndpoint:
        """The endpoint ``spec`` asks for, opened on first use."""
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise TunnelError(f"a task's tunnel spec must name the tunnel, got {spec!r}")
        name, protocol = spec["name"], spec.get("protocol", "grpc")
        factory = ENDPOINTS.get(protocol)
        if factory is None:
            raise TunnelError(
                f"tunnel {name!r} asks for protocol {protocol!r}; this site knows "
                f"{', '.join(sorted(ENDPOINTS))}"
            )
        with self._lock:
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                allow = tuple(str(p) for p in spec.get("allow", ("/",)))
                if spec.get("tls"):
                    tls = self._tls(name)
                    endpoint = factory(name, self._send, allow, tls=tls)
                    endpoint.tls = tls
                elif spec.get("unix_socket"):
                    socket = self._socket()
                    endpoint = factory(name, self._send, allow, unix_socket=socket)
                    endpoint.local_address = self._publish(socket)
                else:
                    endpoint = factory(name, self._send, allow)
                self._endpoints[name] = endpoint
                log.info("%s: tunnel %s listening on %s", self.site, name, endpoint.address)
            return endpoint

    def _tls(self, name: str) -> LoopbackTls:
        from ember.tunnel.tls import write_loopback_tls

        root = Path(tempfile.mkdtemp(prefix="ember-tunnel-", dir=self.site_dir))
        self._private_dirs.append(root)
        return write_loopback_tls(root / name)

    def _socket(self) -> Path:
        # in a private folder (mkdtemp: mode 0700) under the system's temp folder, not the
        # site folder: a socket's path must stay under about 100 bytes
        root = Path(tempfile.mkdtemp(prefix="ember-tunnel-"))
        self._private_dirs.append(root)
        return root / "endpoint.sock"

    def _publish(self, socket: Path) -> str:
        """The address the site's script dials: ``unix:<digits>``, a link in the site folder
        (the script's working directory) to ``socket``. Relative and numeric because some
        clients accept only ``host:port`` (XGBoost's communicator splits the address at its
        one colon and reads a port number); gRPC reads ``unix:<path>`` relative to the
        working directory. Without a site folder, the socket's own path."""
        socket.chmod(0o600)  # connecting needs write permission on the socket itself
        if self.site_dir is None:
            return f"unix:{socket}"
        while True:
            name = str(secrets.randbelow(9 * 10**8) + 10**8)  # nine digits, no leading zero
            link = self.site_dir / name
            try:
                link.symlink_to(socket)
            except FileExistsError:
                continue
            self._links.append(link)
            return f"unix:{name}"

    def get_task(self, wait: float) -> Task | str | None:
        task = self.inner.get_task(wait)
        if isinstance(task, Task) and task.data is not None and TUNNEL_META in task.data.meta:
            endpoint = self.endpoint(task.data.meta[TUNNEL_META])
            task.data.meta[ADDRESS_META] = getattr(endpoint, "local_address", endpoint.address)
            tls: LoopbackTls | None = getattr(endpoint, "tls", None)
            if tls is not None:
                task.data.meta[TLS_META] = {
                    "server_cert": str(tls.server_cert),
                    "client_key": str(tls.client_key),
                    "client_cert": str(tls.client_cert),
                }
        elif task == "END":
            self.close()
        return task

    def submit_result(self, result: TaskResult) -> bool:
        return self.inner.submit_result(result)

    def log_metrics(self, records: list[MetricRecord]) -> None:
        self.inner.log_metrics(records)

    def report_failure(self, reason: str) -> None:
        self.close()
        self.inner.report_failure(reason)

    def report_done(self) -> None:
        self.close()
        self.inner.report_done()

    def close(self) -> None:
        """Close every endpoint (the job is over for this site)."""
        with self._lock:
            endpoints, self._endpoints = list(self._endpoints.values()), {}
            folders, self._private_dirs = self._private_dirs, []
            links, self._links = self._links, []
        for endpoint in endpoints:
            endpoint.close()
        for link in links:
            link.unlink(missing_ok=True)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
