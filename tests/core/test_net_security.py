"""Connection security ``mtls``, ``tls`` and ``clear`` over real gRPC on loopback: the same
identity guarantees in each (the certificate's common name; another CA's, an expired one, or
one without its key refused), and a mismatch between hub and node fails at once."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.test_net_kit import Net, Pki, network, pki, same_name  # noqa: F401  (pki: a fixture)
from ember.config import use_config
from ember.net import ConnectError, Hub, NetNode, TlsFiles
from ember.net.identity import IdentityError, check_host, load_certificate
from ember.provision.certs import identity, make_cert

pytestmark = pytest.mark.timeout(90)

MODES = ["mtls", "tls", "clear"]
Authorize = Callable[[str | None, str], str | None]


def files(
    pki: Pki,  # noqa: F811
    tmp: Path,
    name: str,
    security: str,
    *,
    foreign: bool = False,
    server: bool = False,
    **cert: object,
) -> TlsFiles:
    """A party's TlsFiles: the project CA, and a certificate from the project CA (or the
    foreign one), made afresh under ``tmp``."""
    made = make_cert(
        pki.foreign_ca if foreign else pki.ca,
        name,
        tmp / f"{'foreign-' if foreign else ''}{name}-{time.monotonic_ns()}",
        kind="server" if server else "client",
        hosts=["localhost", "127.0.0.1"] if server else None,
        **cert,  # type: ignore[arg-type]
    )
    return TlsFiles(pki.ca.cert, made.cert, made.key, security)  # type: ignore[arg-type]


def start_hub(net: Net, tls: TlsFiles, authorize: Authorize = same_name) -> Hub:
    with use_config(net.config):
        hub = Hub("server", "127.0.0.1:0", tls, authorize).start()
    net.hubs.append(hub)
    return hub


def make_node(
    net: Net,
    name: str,
    hub: Hub,
    tls: TlsFiles,
    *,
    server_name: str = "localhost",
    cls: type[NetNode] = NetNode,
) -> NetNode:
    with use_config(net.config):
        node = cls(name, f"127.0.0.1:{hub.port}", tls, server_name=server_name)
    net.nodes.append(node)
    return node


def refused(node: NetNode, *, within: float = 3.0) -> ConnectError:
    """The ConnectError that starting ``node`` raises, at once (a refusal is not retried)."""
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        node.start(5)
    assert time.monotonic() - started < within, info.value
    return info.value


def past(days: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)


@pytest.mark.parametrize("mode", MODES)
def test_two_nodes_talk_and_identities_are_the_certificates_names(
    mode: str,
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    seen: list[tuple[str | None, str]] = []

    def authorize(cn: str | None, name: str) -> str | None:
        seen.append((cn, name))
        return same_name(cn, name)

    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", mode, server=True), authorize)
        assert hub.security == mode
        tls = {name: files(pki, tmp_path, name, mode) for name in ("site-1", "site-2")}
        a = make_node(net, "site-1", hub, tls["site-1"]).start(5)
        b = make_node(net, "site-2", hub, tls["site-2"]).start(5)
        assert a.security == b.security == mode
        b.register_handler("echo", lambda sender, body: sender.encode() + b":" + body)
        hub.local.register_handler("echo", lambda sender, body: sender.encode() + b":" + body)
        assert a.request("site-2", "echo", b"hi", 5) == b"site-1:hi"
        assert a.request("server", "echo", b"up", 5) == b"site-1:up"
        assert sorted(seen) == [("site-1", "site-1"), ("site-2", "site-2")]
        for name in ("site-1", "site-2"):
            pem = hub.peer_certificate(name)
            assert pem is not None
            assert identity(pem).name == name
            presented = load_certificate(pem)
            assert presented == load_certificate(tls[name].cert.read_bytes())
        assert hub.connected() == ["site-1", "site-2"]


@pytest.mark.parametrize("mode", MODES)
def test_a_certificate_from_another_ca_is_refused(
    mode: str,
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", mode, server=True))
        intruder = make_node(net, "site-1", hub, files(pki, tmp_path, "site-1", mode, foreign=True))
        error = refused(intruder)
        assert "not signed by the project's CA" in str(error)
        if mode == "mtls":  # refused by the TLS handshake; the node says why
            assert error.kind == "tls"
            assert "TLS handshake failed" in str(error)
        else:  # refused by the hub, which says why
            assert error.kind == "refused"
        assert hub.connected() == []


@pytest.mark.parametrize("mode", MODES)
def test_an_expired_certificate_is_refused(
    mode: str,
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", mode, server=True))
        stale = files(pki, tmp_path, "site-1", mode, days=1, not_before=past(10))
        error = refused(make_node(net, "site-1", hub, stale))
        assert "certificate 'site-1' expired on" in str(error)
        assert error.kind == ("tls" if mode == "mtls" else "refused")
        assert hub.connected() == []


@pytest.mark.parametrize("mode", ["tls", "clear"])
def test_a_certificate_not_yet_valid_is_refused(
    mode: str,
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", mode, server=True))
        early = files(pki, tmp_path, "site-1", mode, not_before=past(-3))
        error = refused(make_node(net, "site-1", hub, early))
        assert "is not valid before" in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_a_name_the_certificate_does_not_allow_is_refused(
    mode: str,
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", mode, server=True))
        impostor = make_node(net, "site-2", hub, files(pki, tmp_path, "site-1", mode))
        error = refused(impostor)
        assert error.kind == "refused"
        assert "certificate 'site-1' may not connect as 'site-2'" in str(error)
        assert hub.connected() == []


@pytest.mark.parametrize("mode", ["tls", "clear"])
def test_someone_elses_certificate_without_its_key_is_refused(
    mode: str,
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", mode, server=True))
        victim = files(pki, tmp_path, "site-1", mode)
        own = files(pki, tmp_path, "site-2", mode)  # a valid key, but not site-1's
        thief = make_node(net, "site-1", hub, TlsFiles(pki.ca.cert, victim.cert, own.key, mode))
        error = refused(thief)
        assert error.kind == "refused"
        assert "signature does not match certificate 'site-1'" in str(error)
        assert hub.connected() == []


class _Replaying(NetNode):
    """Signs a challenge it was not given (as a recorded hello would be)."""

    def _hello(self, hub, nonce, proof):  # type: ignore[no-untyped-def]
        return super()._hello(hub, bytes(len(nonce)), proof)


class _Bare(NetNode):
    """Sends a hello without certificate or signature."""

    def _proof_material(self):  # type: ignore[no-untyped-def]
        return {}


@pytest.mark.parametrize("mode", ["tls", "clear"])
def test_a_signature_over_another_challenge_or_none_is_refused(
    mode: str,
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", mode, server=True))
        tls = files(pki, tmp_path, "site-1", mode)
        error = refused(make_node(net, "site-1", hub, tls, cls=_Replaying))
        assert "signature does not match" in str(error)
        if mode == "tls":  # (with clear, the bare node could not check the hub's proof)
            error = refused(make_node(net, "site-1", hub, tls, cls=_Bare))
            assert "no certificate and signature in the hello" in str(error)
        assert hub.connected() == []
        make_node(net, "site-1", hub, tls).start(5)  # the same files, signing honestly
        assert hub.connected() == ["site-1"]


@pytest.mark.parametrize(
    ("hub_mode", "node_mode"),
    [(h, n) for h in MODES for n in MODES if h != n],
)
def test_a_security_mismatch_fails_at_once_and_clearly(
    hub_mode: str,
    node_mode: str,
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", hub_mode, server=True))
        node = make_node(net, "site-1", hub, files(pki, tmp_path, "site-1", node_mode))
        error = refused(node)
        assert error.kind == "security", error
        assert "connection security mismatch" in str(error)
        assert hub.connected() == []


def test_with_clear_a_node_checks_the_hubs_identity(
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        fake = start_hub(net, files(pki, tmp_path, "server", "clear", server=True, foreign=True))
        error = refused(make_node(net, "site-1", fake, files(pki, tmp_path, "site-1", "clear")))
        assert error.kind == "tls"
        assert "the hub's identity is not proven" in str(error)
        assert "not signed by the project's CA" in str(error)

        hub = start_hub(net, files(pki, tmp_path, "server", "clear", server=True))
        tls = files(pki, tmp_path, "site-1", "clear")
        error = refused(make_node(net, "site-1", hub, tls, server_name="elsewhere.example"))
        assert error.kind == "tls"
        assert "not 'elsewhere.example'" in str(error)

        # a client's certificate cannot stand in for the hub's
        client_hub = start_hub(net, files(pki, tmp_path, "localhost", "clear"))
        error = refused(make_node(net, "site-1", client_hub, tls))
        assert "may not authenticate a server" in str(error)


def _rsa_files(pki: Pki, tmp: Path, name: str, security: str) -> TlsFiles:  # noqa: F811
    """A client certificate with an RSA key, signed by the project CA."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp / f"rsa-{name}"
    folder.mkdir()
    (folder / "c.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "c.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(pki.ca.cert, folder / "c.crt", folder / "c.key", security)  # type: ignore[arg-type]


def test_an_rsa_key_proves_its_identity_too(
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    with network(pki) as net:
        hub = start_hub(net, files(pki, tmp_path, "server", "tls", server=True))
        make_node(net, "site-1", hub, _rsa_files(pki, tmp_path, "site-1", "tls")).start(5)
        pem = hub.peer_certificate("site-1")
        assert pem is not None
        assert identity(pem).name == "site-1"


def test_security_is_validated_and_mtls_is_the_default(pki: Pki) -> None:  # noqa: F811
    assert TlsFiles(pki.ca.cert, pki.ca.cert, pki.ca.key).security == "mtls"
    with pytest.raises(ValueError, match="must be one of mtls, tls, clear"):
        TlsFiles(pki.ca.cert, pki.ca.cert, pki.ca.key, "plain")  # type: ignore[arg-type]


def test_check_host_matches_names_and_addresses(pki: Pki, tmp_path: Path) -> None:  # noqa: F811
    cert = load_certificate(files(pki, tmp_path, "srv", "tls", server=True).cert.read_bytes())
    check_host(cert, "localhost")
    check_host(cert, "127.0.0.1")
    for wrong in ("127.0.0.2", "example.org", "srv"):
        with pytest.raises(IdentityError):
            check_host(cert, wrong)
