"""Networked messaging: nodes connected to a hub over gRPC.

Connections are secured as the project chose (:class:`TlsFiles` ``security``): ``mtls``
(mutual TLS, the default), ``tls`` (server-authenticated TLS) or ``clear`` (plain gRPC,
readable on the wire). In ``tls`` and ``clear`` a node proves its identity by signing the
hub's challenge with its certificate's key (:mod:`ember.net.identity`); in every mode its
identity is its certificate's common name.

A :class:`Hub` is a gRPC server that registers named nodes and routes their frames by
name; it is a node itself (``hub.local``). A :class:`NetNode` dials out to the hub (a site
behind a firewall opens no port), registers, then sends requests to other nodes and serves
theirs. Bodies of any size travel in fragments; many requests share one stream. The
:class:`NetTransport` puts the runtime's messaging API (FOBS payloads, pulled tensors) on
top. Importing this package does not import grpc; starting a hub or node does.
"""

import os as _os

# gRPC's core logs one line (INFO, to stderr, no rate limit) for every connection whose TLS
# handshake fails: garbage connections would fill a hub's log. Keep its errors only unless
# the operator chose otherwise (GRPC_VERBOSITY=INFO shows them again). gRPC reads this when
# it is first imported, which this package does only later, when a hub or node starts.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from ember.net.errors import ConnectError, TransportError, UnknownTopicError
from ember.net.hub import Hub, HubLocal
from ember.net.messenger import Messenger, RemoteError
from ember.net.node import NetNode
from ember.net.tls import TlsFiles
from ember.net.transport import NetTransport

__all__ = [
    "ConnectError",
    "Hub",
    "HubLocal",
    "Messenger",
    "NetNode",
    "NetTransport",
    "RemoteError",
    "TlsFiles",
    "TransportError",
    "UnknownTopicError",
]
