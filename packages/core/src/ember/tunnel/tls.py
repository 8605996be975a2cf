"""Throw-away TLS material for a tunnel's loopback hops.

A loopback port is open to every process of its machine, and some services bind every
interface (XGBoost's federated server binds 0.0.0.0). So both ends of a tunnel can run with
mutual TLS from a fresh self-signed server certificate and client certificate, made per job
and written only for that job's processes (mode 0600): nothing else can talk to them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class LoopbackTls:
    """Paths of the server's key and certificate and the client's key and certificate."""

    folder: Path
    server_key: Path
    server_cert: Path
    client_key: Path
    client_cert: Path


def _pair(name: str, server: bool) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def write_loopback_tls(folder: Path) -> LoopbackTls:
    """Fresh material in ``folder`` (created, mode 0700; keys 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    paths = LoopbackTls(
        folder,
        folder / "server.key",
        folder / "server.crt",
        folder / "client.key",
        folder / "client.crt",
    )
    for (key_path, cert_path), (name, server) in zip(
        [(paths.server_key, paths.server_cert), (paths.client_key, paths.client_cert)],
        [("localhost", True), ("ember-xgboost-relay", False)],
        strict=True,
    ):
        key_pem, cert_pem = _pair(name, server)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        cert_path.write_bytes(cert_pem)
    return paths
