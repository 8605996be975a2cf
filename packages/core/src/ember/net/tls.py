"""TLS material: the project CA and a party's certificate and key, as PEM files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.net.errors import ConnectError


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the project's root CA, this party's certificate and its private key.

    A hub requires every connecting party to present a certificate signed by ``ca``
    (mutual TLS); a node checks the hub's certificate against ``ca`` too.
    """

    ca: Path
    cert: Path
    key: Path

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
        """gRPC server credentials that require a client certificate signed by the CA."""
        import grpc

        ca, cert, key = self._read()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )

    def channel_credentials(self) -> Any:
        """gRPC channel credentials presenting this party's certificate."""
        import grpc

        ca, cert, key = self._read()
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )


def peer_common_name(context: Any) -> str | None:
    """The verified common name of a gRPC peer's certificate (None on a plain connection)."""
    names = context.auth_context().get("x509_common_name") or []
    if not names:
        return None
    name = names[0]
    return name.decode() if isinstance(name, bytes) else str(name)


def peer_certificate(context: Any) -> bytes | None:
    """The PEM certificate a gRPC peer presented (verified by the TLS handshake), if any."""
    pems = context.auth_context().get("x509_pem_cert") or []
    return bytes(pems[0]) if pems else None
