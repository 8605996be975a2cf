"""Certificates for a project: one root CA, and a certificate per participant signed by it.

A participant's identity is its certificate's common name (the server's host name, a site's
name, an admin's e-mail); its organisation is ``O`` and its kind/role ``OU`` (``server``,
``client``, or an admin role such as ``lead``). Keys are ECDSA P-256 (fast to make, accepted
by gRPC's TLS). Files are PEM; private keys are written with mode 0600.
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
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DAYS = 365


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Identity:
    """Who a certificate names."""

    name: str
    org: str | None
    kind: str | None


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _name(common_name: str, org: str | None, kind: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if kind:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind))
    return x509.Name(attrs)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(project: str, folder: Path, days: int = 3650) -> CertFiles:
    """A new root CA for ``project``: ``folder/rootCA.pem`` and ``folder/rootCA.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{project} root CA", project, "ca")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    files = CertFiles(folder / "rootCA.pem", folder / "rootCA.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, files.key)
    return files


def make_cert(
    ca: CertFiles,
    common_name: str,
    folder: Path,
    *,
    kind: str,
    org: str | None = None,
    hosts: list[str] | None = None,
    days: int = DEFAULT_DAYS,
    stem: str | None = None,
    not_before: datetime.datetime | None = None,
) -> CertFiles:
    """A certificate for ``common_name`` signed by ``ca``, as ``folder/<stem>.crt`` and
    ``folder/<stem>.key`` (stem: ``kind``). ``hosts`` (DNS names or IP addresses) make it a
    server certificate valid for those names; others are client certificates."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not an EC private key made by make_ca")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, org, kind))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if hosts:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        alt: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    stem = stem or kind
    files = CertFiles(folder / f"{stem}.crt", folder / f"{stem}.key")
    folder.mkdir(parents=True, exist_ok=True)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, files.key)
    return files


def identity(cert_pem: bytes) -> Identity:
    """The name, organisation and kind/role a certificate (PEM or DER) states."""
    if cert_pem.lstrip().startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(cert_pem)
    else:
        cert = x509.load_der_x509_certificate(cert_pem)

    def first(oid: x509.ObjectIdentifier) -> str | None:
        values = cert.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    return Identity(
        first(NameOID.COMMON_NAME) or "",
        first(NameOID.ORGANIZATION_NAME),
        first(NameOID.ORGANIZATIONAL_UNIT_NAME),
    )
