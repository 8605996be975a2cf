"""Proof of identity without mutual TLS: a certificate and a signature over a fresh challenge.

With connection security ``tls`` or ``clear`` the TLS layer does not authenticate the node
(``tls``: server authentication only; ``clear``: no TLS at all), so the node proves who it is
inside the protocol, with the same material mutual TLS would use:

1. on connect, the hub sends a CHALLENGE frame holding 32 random bytes (the nonce);
2. the node answers with its HELLO: its certificate (PEM) and a signature, made with its
   private key, over :func:`hello_statement` (the connection security, the hub's name, the
   nonce and the node name it asks for);
3. the hub checks that the certificate was issued by the project CA (``TlsFiles.ca``), that
   both are within their validity period, that the certificate may authenticate a client,
   and the signature against the certificate's public key. The certificate's common name is
   then the peer's identity, exactly as a mutual-TLS handshake would have established it.

A replayed hello fails (the nonce is new on every connection); someone else's certificate is
useless without its key. With ``clear``, the hub proves its identity the same way in its
WELCOME (a signature over :func:`welcome_statement`, which holds the node's own nonce), and
the node checks its certificate names the host it dialled. Keys: ECDSA (what
:func:`ember.provision.certs.make_cert` makes), RSA (PSS) and Ed25519.

This module imports ``cryptography``; ``ember.net`` imports it only when a hub or node starts.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import msgpack
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from ember.errors import EmberError

NONCE_BYTES = 32


class IdentityError(EmberError):
    """A certificate or signature that does not prove the identity it claims (the message
    says why)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def load_certificate(pem: bytes, what: str = "certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(bytes(pem))
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"the {what} is not a PEM certificate: {exc}") from None


def load_private_key(pem: bytes, what: str = "private key") -> Any:
    try:
        return serialization.load_pem_private_key(bytes(pem), password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"the {what} cannot be read: {exc}") from None


def common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def describe(cert: x509.Certificate) -> str:
    return f"certificate {common_name(cert)!r}" if common_name(cert) else "a certificate"


def check_validity(cert: x509.Certificate, now: datetime.datetime | None = None) -> None:
    """Raise :class:`IdentityError` unless ``now`` lies in the certificate's validity period."""
    now = now or _now()
    if now > cert.not_valid_after_utc:
        raise IdentityError(
            f"{describe(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    if now < cert.not_valid_before_utc:
        raise IdentityError(
            f"{describe(cert)} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
        )


def verify_certificate(
    pem: bytes,
    ca: x509.Certificate,
    purpose: str = "client",
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """The certificate in ``pem``, if the project CA ``ca`` issued it, both are valid now, it
    is not a CA and it may serve ``purpose`` (``client`` or ``server``, by its extended key
    usage, when it states one); else :class:`IdentityError` saying why."""
    cert = load_certificate(pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError(_not_signed_by(cert, ca)) from None
    check_validity(ca, now)
    check_validity(cert, now)
    try:
        constraints = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
        if constraints.value.ca:  # type: ignore[attr-defined]
            raise IdentityError(f"{describe(cert)} is a CA certificate, not a participant's")
    except x509.ExtensionNotFound:
        pass
    usage = (
        ExtendedKeyUsageOID.CLIENT_AUTH
        if purpose == "client"
        else (ExtendedKeyUsageOID.SERVER_AUTH)
    )
    try:
        usages = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
        if usage not in usages:  # type: ignore[operator]
            raise IdentityError(f"{describe(cert)} may not authenticate a {purpose}")
    except x509.ExtensionNotFound:
        pass
    return cert


def check_host(cert: x509.Certificate, host: str) -> None:
    """Raise :class:`IdentityError` unless the certificate names ``host`` (a DNS name or an
    IP address in its subject alternative names; without any, its common name)."""
    try:
        alt = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        alt = None
    if alt is not None:
        dns = [name.lower() for name in alt.get_values_for_type(x509.DNSName)]  # type: ignore[attr-defined]
        ips = alt.get_values_for_type(x509.IPAddress)  # type: ignore[attr-defined]
        try:
            if ipaddress.ip_address(host) in ips:
                return
        except ValueError:
            if host.lower() in dns:
                return
        names = [*dns, *(str(ip) for ip in ips)]
    else:
        if common_name(cert) == host:
            return
        names = [common_name(cert)]
    raise IdentityError(f"{describe(cert)} is for {', '.join(names)}, not {host!r}")


def hello_statement(security: str, hub: str, nonce: bytes, name: str) -> bytes:
    """What a node signs: it asks ``hub`` (over ``security``) for ``name``, now."""
    # msgpack has no type hints: to mypy its packb returns Any
    statement: bytes = msgpack.packb(["ember.net hello", security, hub, bytes(nonce), name])
    return statement


def welcome_statement(security: str, hub: str, nonce: bytes, name: str) -> bytes:
    """What a hub signs (``clear``): it welcomes ``name``, who sent ``nonce``."""
    statement: bytes = msgpack.packb(["ember.net welcome", security, hub, bytes(nonce), name])
    return statement


def sign(key: Any, data: bytes) -> bytes:
    """``data`` signed with a private key (ECDSA/SHA-256, RSA-PSS/SHA-256, or Ed25519)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, _pss(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise IdentityError(f"cannot sign with a {type(key).__name__} (EC, RSA or Ed25519 only)")


def verify_signature(cert: x509.Certificate, signature: bytes, data: bytes) -> None:
    """Raise :class:`IdentityError` unless ``signature`` over ``data`` was made with the
    private key of ``cert``."""
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(bytes(signature), data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(bytes(signature), data, _pss(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(bytes(signature), data)
        else:
            raise IdentityError(f"{describe(cert)} holds a key of an unsupported type")
    except InvalidSignature:
        raise IdentityError(
            f"the signature does not match {describe(cert)}: the peer does not hold its private key"
        ) from None


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def diagnose(cert_pem: bytes, ca_pem: bytes) -> str | None:
    """Why a party's own certificate would be refused by its hub (a hint after a failed
    handshake): None when nothing is wrong with it here."""
    try:
        verify_certificate(cert_pem, load_certificate(ca_pem, "CA certificate"))
    except IdentityError as exc:
        return str(exc)
    return None


def _not_signed_by(cert: x509.Certificate, ca: x509.Certificate) -> str:
    """Why ``cert`` is not the project CA's: names the two CAs apart even when another CA
    carries the same name (then by the fingerprints of their keys)."""
    issuer, project = cert.issuer.rfc4514_string(), ca.subject.rfc4514_string()
    if issuer != project:
        return (
            f"{describe(cert)} (issued by {issuer!r}) is not signed by the project's CA "
            f"({project!r})"
        )

    def key_id(value: x509.Certificate) -> str:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(
            value.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return digest.finalize().hex()[:16]

    return (
        f"{describe(cert)} is not signed by the project's CA: it was issued by another CA "
        f"that has the same name ({project!r}) but a different key (the project CA's key "
        f"sha256 {key_id(ca)}...); re-issue it from the project's CA, or the project CA was "
        f"re-created since it was issued"
    )
