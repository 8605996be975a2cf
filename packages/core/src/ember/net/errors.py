"""Errors of the networked transport (the runtime's transport errors, plus ConnectError)."""

from __future__ import annotations

from ember.runtime.transport import TransportError, UnknownTopicError


class ConnectError(TransportError):
    """A node could not register with its hub.

    ``kind`` says why: ``refused`` (the hub's authorize refused the name, or it is already
    connected), ``unreachable`` (nothing answers at the address), ``tls`` (the TLS handshake
    failed: a certificate from another CA, a wrong server name) or ``timeout``.
    """

    def __init__(self, message: str, kind: str = "unreachable") -> None:
        super().__init__(message)
        self.kind = kind


__all__ = ["ConnectError", "TransportError", "UnknownTopicError"]
