"""Tunnels: another program's request/reply protocol carried through Ember.

A local client at a site (an XGBoost worker, a Flower SuperNode) talks to a loopback
endpoint in the site's job process; each call travels as one Ember request to the server's
job process, which replays it on the real service beside it (also on loopback) and sends the
reply back. Sites open no port; calls are numbered and answered at most once; every wait is
bounded by ``tunnel.call_timeout``. See docs/tunnels.md.

- Server side: a workflow opens a tunnel with ``ctx.tunnels.open(name, upstream, sites,
  allow)`` (:class:`TunnelService`), the upstream being a :class:`GrpcUpstream`, an
  :class:`HttpUpstream` or anything
  with the :class:`Upstream` protocol.
- Site side: the client app's ``site_workflow`` is :class:`TunnelSiteLink`; a task whose
  meta holds ``TUNNEL_META`` gets its endpoint's address under ``ADDRESS_META``.
"""

from typing import TYPE_CHECKING, Any

from ember.tunnel.calls import TOPIC, TunnelCall, TunnelError, TunnelReply
from ember.tunnel.service import TunnelService, Upstream
from ember.tunnel.site import (
    ADDRESS_META,
    ENDPOINTS,
    TLS_META,
    TUNNEL_META,
    TunnelEndpoint,
    TunnelSiteLink,
    sender,
)

if TYPE_CHECKING:
    from ember.tunnel.grpc_tunnel import GrpcTunnelEndpoint, GrpcUpstream
    from ember.tunnel.http_tunnel import HttpTunnelEndpoint, HttpUpstream
    from ember.tunnel.tls import LoopbackTls, write_loopback_tls

_LAZY = {
    # they import grpc and cryptography: only a job that tunnels pays for them
    "GrpcTunnelEndpoint": "grpc_tunnel",
    "GrpcUpstream": "grpc_tunnel",
    "HttpTunnelEndpoint": "http_tunnel",
    "HttpUpstream": "http_tunnel",
    "LoopbackTls": "tls",
    "write_loopback_tls": "tls",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ember.tunnel' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"ember.tunnel.{module}"), name)


__all__ = [
    "ADDRESS_META",
    "ENDPOINTS",
    "TLS_META",
    "TOPIC",
    "TUNNEL_META",
    "GrpcTunnelEndpoint",
    "GrpcUpstream",
    "HttpTunnelEndpoint",
    "HttpUpstream",
    "LoopbackTls",
    "TunnelCall",
    "TunnelEndpoint",
    "TunnelError",
    "TunnelReply",
    "TunnelService",
    "TunnelSiteLink",
    "Upstream",
    "sender",
    "write_loopback_tls",
]
