"""Provisioning gives each site a gateway certificate signed by the project's root CA."""

from __future__ import annotations

from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ember.provision.kits import provision
from ember.system.kit import Kit
from ember.system.poc import prepare


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _names(cert: x509.Certificate) -> set[str]:
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in alt}


def test_a_provisioned_site_gets_a_gateway_certificate_for_its_hosts_from_the_root_ca(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project.yml"
    project.write_text(
        yaml.safe_dump(
            {
                "name": "edge",
                "server": {"name": "localhost", "port": 18090},
                "clients": [
                    {"name": "site-a", "org": "a", "hosts": ["edge.a.example", "10.1.2.3"]},
                    {"name": "site-b", "org": "b"},
                ],
                "admins": [{"name": "lead@a.example", "org": "a", "role": "lead"}],
            }
        )
    )
    result = provision(project, tmp_path / "ws")
    kits = {name: Path(folder) for name, folder in result.participants.items()}
    for folder in kits.values():
        Kit.load(folder)  # every kit's signed manifest verifies, the plugin's files included
    root = _cert(kits["site-a"] / "startup" / "rootCA.pem")
    for site, extra in (("site-a", {"edge.a.example", "10.1.2.3"}), ("site-b", set())):
        cert = _cert(kits[site] / "startup" / "gateway.crt")
        cert.verify_directly_issued_by(root)
        assert _names(cert) == {"localhost", "127.0.0.1", *extra}
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in usage
        assert (kits[site] / "startup" / "gateway.key").stat().st_mode & 0o077 == 0
    assert not (kits["localhost"] / "startup" / "gateway.crt").exists()  # sites only


def test_a_poc_workspace_gives_its_sites_gateway_certificates_too(tmp_path: Path) -> None:
    ws = prepare(tmp_path / "poc", num_clients=2)
    root = _cert(ws.clients[0].startup / "rootCA.pem")
    for kit in ws.clients:
        _cert(kit.startup / "gateway.crt").verify_directly_issued_by(root)
    assert not (ws.server.startup / "gateway.crt").exists()
