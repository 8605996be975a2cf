"""Connection security and its material: the project CA and a party's certificate and key,
as PEM files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ember.net.errors import ConnectError

Security = Literal["mtls", "tls", "clear"]
CONNECTION_SECURITY: tuple[str, ...] = ("mtls", "tls", "clear")
"""The connection securities a project may choose (``mtls`` is the default)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the project's root CA, this party's certificate and its private key, and
    how connections are secured (``security``); hub and nodes must use the same.

    - ``mtls`` (the default): TLS, and the hub requires a client certificate signed by
      ``ca`` at the handshake (mutual TLS); a node checks the hub's certificate against
      ``ca``.
    - ``tls``: TLS with server authentication only; a node proves its identity inside the
      protocol: it presents its certificate and signs the hub's fresh challenge with its key
      (see :mod:`ember.net.identity`). The hub checks the certificate against ``ca``.
    - ``clear``: no TLS (plain gRPC); both sides prove their identity as with ``tls`` (the
      hub signs the node's challenge too). **Traffic is readable, and alterable, by anyone
      on the network path**: only for networks that secure it otherwise (a VPN, a proxy or
      load balancer that terminates TLS in front of the hub).

    In every mode the identity of a node is its certificate's common name, and a
    certificate from another CA, an expired one, or one presented without its key is
    refused.
    """

    ca: Path
    cert: Path
    key: Path
    security: Security = "mtls"

    def __post_init__(self) -> None:
        if self.security not in CONNECTION_SECURITY:
            raise ValueError(
                f"connection security must be one of {', '.join(CONNECTION_SECURITY)}, "
                f"not {self.security!r}"
            )

    @property
    def uses_tls(self) -> bool:
        """Whether connections are TLS (``mtls`` or ``tls``; ``clear`` is plain gRPC)."""
        return self.security != "clear"

    def _read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return (
                Path(self.ca).read_bytes(),
                Path(self.cert).read_bytes(),
                Path(self.key).read_bytes(),
            )
        except OSError as exc:
            raise ConnectError(
                f"cannot read TLS file {exc.filename}: {exc.strerror}", kind="tls"
            ) from exc

    def server_credentials(self) -> Any:
        """gRPC server credentials: with ``mtls``, they require a client certificate signed by
        the CA; with ``tls``, they ask for none. (``clear`` has none: ValueError.)"""
        import grpc

        if not self.uses_tls:
            raise ValueError("connection security 'clear' uses no TLS credentials")
        ca, cert, key = self._read()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=self.security == "mtls"
        )

    def channel_credentials(self) -> Any:
        """gRPC channel credentials that check the hub's certificate against the CA, and
        with ``mtls`` present this party's certificate (``tls``: server authentication
        only; the node proves its identity in the protocol)."""
        import grpc

        if not self.uses_tls:
            raise ValueError("connection security 'clear' uses no TLS credentials")
        ca, cert, key = self._read()
        if self.security == "tls":
            return grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )


def peer_common_name(context: Any) -> str | None:
    """The verified common name of a gRPC peer's TLS client certificate (None on a plain
    connection, or when the server did not require one)."""
    names = context.auth_context().get("x509_common_name") or []
    if not names:
        return None
    name = names[0]
    return name.decode() if isinstance(name, bytes) else str(name)


def peer_certificate(context: Any) -> bytes | None:
    """The PEM certificate a gRPC peer presented in the TLS handshake, if any (verified by
    the handshake only with ``mtls``)."""
    pems = context.auth_context().get("x509_pem_cert") or []
    return bytes(pems[0]) if pems else None
