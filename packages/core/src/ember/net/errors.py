"""Errors of the networked transport (the runtime's transport errors, plus ConnectError)."""

from __future__ import annotations

from ember.runtime.transport import TransportError, UnknownTopicError


class ConnectError(TransportError):
    """A node could not register with its hub.

    ``kind`` says why: ``refused`` (the hub refused it: authorize refused the name, the name
    is already connected, or, without mutual TLS, its certificate or signature did not prove
    its identity), ``unreachable`` (nothing answers at the address), ``tls`` (the TLS
    handshake failed: a certificate from another CA or expired, a wrong server name; or,
    with connection security ``clear``, the hub's proof of identity failed), ``security``
    (the hub and the node use different connection securities) or ``timeout``.
    """

    def __init__(self, message: str, kind: str = "unreachable") -> None:
        super().__init__(message)
        self.kind = kind


__all__ = ["ConnectError", "TransportError", "UnknownTopicError"]
