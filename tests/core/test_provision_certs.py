"""Project certificates: a root CA and participants' certificates signed by it."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ember.provision.certs import identity, make_ca, make_cert


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_participant_certificates_are_signed_by_the_project_ca(tmp_path: Path) -> None:
    ca = make_ca("demo", tmp_path / "ca")
    server = make_cert(ca, "localhost", tmp_path / "s", kind="server", hosts=["localhost", "::1"])
    site = make_cert(ca, "site-1", tmp_path / "c", kind="client", org="hospital-a")
    root = load(ca.cert)
    for files in (server, site):
        cert = load(files.cert)
        cert.verify_directly_issued_by(root)  # raises when not signed by the CA
        assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert identity(site.cert.read_bytes()).name == "site-1"
    assert identity(site.cert.read_bytes()).org == "hospital-a"
    assert identity(site.cert.read_bytes()).kind == "client"
    sans = load(server.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sans.value.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = load(server.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages
    assert ExtendedKeyUsageOID.SERVER_AUTH not in (
        load(site.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )


def test_another_project_s_ca_did_not_sign_it(tmp_path: Path) -> None:
    ours = make_ca("ours", tmp_path / "ours")
    theirs = make_ca("theirs", tmp_path / "theirs")
    site = make_cert(theirs, "site-1", tmp_path / "c", kind="client")
    with pytest.raises(ValueError, match="issuer"):  # the issuer names differ
        load(site.cert).verify_directly_issued_by(load(ours.cert))


def test_validity_window(tmp_path: Path) -> None:
    ca = make_ca("demo", tmp_path / "ca")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = make_cert(ca, "old", tmp_path / "o", kind="client", days=1, not_before=past)
    assert load(expired.cert).not_valid_after_utc < datetime.datetime.now(datetime.UTC)
