"""Provisioning: project files, signed startup kits, adding participants, the policy check."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from ember.cli.provision_cmd import provision as provision_cli
from ember.provision.certs import identity, make_ca
from ember.provision.kits import ProvisionError, ProvisionResult, add_participant, provision
from ember.provision.manifest import KitTamperedError, sign_kit, verify_kit
from ember.provision.policy import PolicyError, allowed, default_policy
from ember.provision.project import ProjectError, load_project, parse_project
from ember.system.kit import Kit

PROJECT = Path(__file__).parent / "fixtures" / "provision" / "project.yml"
SERVER, LEAD, MEMBER = "localhost", "lead@org-a.example", "member@org-b.example"
EVERYONE = [SERVER, "site-a", "site-b", LEAD, MEMBER]


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_kit(folder: Path) -> Kit:
    return Kit.load(folder)  # verifies the kit's signed manifest too


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def provisioned(tmp_path: Path) -> ProvisionResult:
    return provision(PROJECT, tmp_path / "ws")


def test_kits_load_and_their_certificates_chain_to_the_state_ca(
    provisioned: ProvisionResult, tmp_path: Path
) -> None:
    root = tmp_path / "ws" / "demo"
    assert provisioned.root == root
    assert provisioned.prod == root / "prod_00"
    assert provisioned.new_ca
    assert provisioned.ca.cert == root / "state" / "rootCA.pem"
    assert sorted(p.name for p in (root / "state").iterdir()) == [
        "project.yml",
        "rootCA.key",
        "rootCA.pem",
    ]
    assert (root / "state" / "project.yml").read_bytes() == PROJECT.read_bytes()
    assert sorted(provisioned.participants) == sorted(EVERYONE)
    assert sorted(p.name for p in provisioned.prod.iterdir()) == sorted(EVERYONE)
    ca = load_cert(provisioned.ca.cert)
    ca_key = provisioned.ca.key.read_bytes()
    for path in provisioned.prod.rglob("*"):  # the CA's key is in no kit
        assert path.name != "rootCA.key"
        assert not path.is_file() or path.read_bytes() != ca_key

    expected = {
        SERVER: ("server", None, None, "server"),
        "site-a": ("client", None, "org-a", "client"),
        "site-b": ("client", None, "org-b", "client"),
        LEAD: ("admin", "lead", "org-a", "lead"),
        MEMBER: ("admin", "member", "org-b", "member"),
    }
    for name, (kind, role, org, cert_kind) in expected.items():
        folder = provisioned.participants[name]
        kit = load_kit(folder)
        assert (kit.project, kit.name, kit.kind, kit.role) == ("demo", name, kind, role)
        assert (kit.host, kit.port) == ("127.0.0.1", 18002)  # the address clients dial
        data = json.loads((kit.startup / "kit.json").read_text())
        assert data["org"] == org
        assert data["connection_security"] == "mtls"
        assert kit.tls.ca.read_bytes() == provisioned.ca.cert.read_bytes()
        cert = load_cert(kit.tls.cert)
        cert.verify_directly_issued_by(ca)
        who = identity(kit.tls.cert.read_bytes())
        assert (who.name, who.org, who.kind) == (name, org, cert_kind)
        assert stat.S_IMODE(kit.tls.key.stat().st_mode) == 0o600
        verify_kit(kit.startup)
        files = {p.name for p in kit.startup.iterdir()}
        assert ("authorization.json" in files) == (kind != "admin")
        assert ("resources.json" in files) == (kind == "client")
        if kind != "admin":
            policy = json.loads((kit.startup / "authorization.json").read_text())
            assert policy == default_policy()
            for action in ("start", "stop"):
                script = kit.startup / f"{action}.sh"
                assert os.access(script, os.X_OK)
                assert f"daemon {action} --kit" in script.read_text()

    server = load_cert(provisioned.participants[SERVER] / "startup" / "server.crt")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    resources = {
        site: json.loads(
            (provisioned.participants[site] / "startup" / "resources.json").read_text()
        )
        for site in ("site-a", "site-b")
    }
    assert resources["site-a"]["allow_custom_code"] is True
    assert resources["site-b"] == {
        "max_concurrent_jobs": 2,
        "allow_custom_code": False,
        "trusted_code_sha256": [],
    }


def test_provisioned_kits_connect_over_mutual_tls_and_another_projects_are_refused(
    provisioned: ProvisionResult, tmp_path: Path
) -> None:
    from ember.config import Config, use_config
    from ember.net import ConnectError, Hub, NetNode

    other_project = tmp_path / "other.yml"
    other_project.write_text(PROJECT.read_text().replace("name: demo", "name: other"))
    other = provision(other_project, tmp_path / "ws")
    assert other.ca.cert.read_bytes() != provisioned.ca.cert.read_bytes()
    server = load_kit(provisioned.participants[SERVER])
    with use_config(Config({"net.connect_timeout": 5.0})):
        hub = Hub(
            "server", "127.0.0.1:0", server.tls, lambda cn, name: None if cn == name else "no"
        )
        hub.start()
        nodes: list[NetNode] = []
        try:
            for name, host in (("site-a", "127.0.0.1"), ("site-b", "localhost")):
                kit = load_kit(provisioned.participants[name])  # both SANs are valid
                node = NetNode(name, f"127.0.0.1:{hub.port}", kit.tls, server_name=host)
                nodes.append(node.start(5.0))
            assert hub.connected() == ["site-a", "site-b"]
            foreign = load_kit(other.participants["site-a"])
            intruder = NetNode("site-a", f"127.0.0.1:{hub.port}", foreign.tls, server_name=SERVER)
            nodes.append(intruder)
            with pytest.raises(ConnectError) as refused:
                intruder.start(5.0)
            assert refused.value.kind == "tls"
        finally:
            for node in nodes:
                node.close(0)
            hub.stop(0)


def test_verify_kit_names_what_was_tampered_with(
    provisioned: ProvisionResult, tmp_path: Path
) -> None:
    original = provisioned.participants["site-a"]
    verify_kit(original)  # the participant folder works as well as its startup/

    def tampered(change: str) -> Path:
        folder = tmp_path / change
        shutil.copytree(original, folder)
        return folder / "startup"

    kit_json = tampered("byte")
    data = bytearray((kit_json / "kit.json").read_bytes())
    data[data.index(b"18002")] = ord("9")  # one byte: another port
    (kit_json / "kit.json").write_bytes(bytes(data))
    with pytest.raises(KitTamperedError, match=r"'site-a'.*kit\.json was altered"):
        verify_kit(kit_json)

    deleted = tampered("deleted")
    (deleted / "resources.json").unlink()
    with pytest.raises(KitTamperedError, match=r"resources\.json is missing"):
        verify_kit(deleted)

    added = tampered("added")
    (added / "extra.py").write_text("print('hi')\n")
    with pytest.raises(KitTamperedError, match=r"extra\.py was added"):
        verify_kit(added)

    # a re-signed manifest needs the CA's key: another CA's signature is refused
    resigned = tampered("resigned")
    (resigned / "resources.json").write_text('{"allow_custom_code": true}\n')
    other = make_ca("demo", tmp_path / "other-ca")
    sign_kit(resigned, "site-a", other.key)
    with pytest.raises(KitTamperedError, match="bad signature"):
        verify_kit(resigned)

    for missing in ("manifest.sig", "manifest.json"):
        folder = tampered(f"no-{missing}")
        (folder / missing).unlink()
        with pytest.raises(KitTamperedError, match=f"lacks {missing}"):
            verify_kit(folder)


def test_add_participant_reuses_the_ca_and_leaves_other_kits_alone(
    provisioned: ProvisionResult, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    before = snapshot(provisioned.prod)
    state = snapshot(provisioned.root / "state")

    added = add_participant(ws, "demo", client="site-c", org="org-c", allow_custom_code=False)
    assert not added.new_ca
    assert added.prod == provisioned.prod
    assert added.participants == {"site-c": provisioned.prod / "site-c"}
    kit = load_kit(added.participants["site-c"])
    assert kit.tls.ca.read_bytes() == state["rootCA.pem"]  # the same root, never a new one
    load_cert(kit.tls.cert).verify_directly_issued_by(load_cert(provisioned.ca.cert))
    assert identity(kit.tls.cert.read_bytes()).org == "org-c"
    assert json.loads((kit.startup / "resources.json").read_text())["allow_custom_code"] is False
    verify_kit(kit.startup)

    admin = add_participant(ws, "demo", admin="boss@org-c.example", org="org-c", role="org_admin")
    admin_kit = load_kit(admin.participants["boss@org-c.example"])
    assert admin_kit.role == "org_admin"
    assert identity(admin_kit.tls.cert.read_bytes()).kind == "org_admin"

    after = snapshot(provisioned.prod)
    assert {k: v for k, v in after.items() if k in before} == before  # others untouched
    for name in EVERYONE:
        verify_kit(provisioned.participants[name])
    assert snapshot(provisioned.root / "state")["rootCA.key"] == state["rootCA.key"]
    stored = load_project(provisioned.root / "state" / "project.yml")
    assert "site-c" in stored.participants
    assert "boss@org-c.example" in stored.participants
    assert [c.allow_custom_code for c in stored.clients] == [True, False, False]

    with pytest.raises(ProvisionError, match="'site-c' is already taken"):
        add_participant(ws, "demo", client="site-c")
    with pytest.raises(ProvisionError, match="not an e-mail"):
        add_participant(ws, "demo", admin="bob", org="org-c", role="lead")
    with pytest.raises(ProvisionError, match="needs an --org and a --role"):
        add_participant(ws, "demo", admin="bob@org-c.example")
    with pytest.raises(ProvisionError, match="provision it first"):
        add_participant(ws, "nope", client="site-d")


def test_a_second_provisioning_keeps_the_root_in_a_new_prod_folder(
    provisioned: ProvisionResult, tmp_path: Path
) -> None:
    add_participant(tmp_path / "ws", "demo", client="site-c")
    again = provision(PROJECT, tmp_path / "ws")
    assert again.prod.name == "prod_01"
    assert not again.new_ca
    assert again.ca.cert.read_bytes() == provisioned.ca.cert.read_bytes()
    first_ca = load_cert(provisioned.ca.cert)
    for name in EVERYONE:
        verify_kit(again.participants[name])
        load_cert(load_kit(again.participants[name]).tls.cert).verify_directly_issued_by(first_ca)
    assert any("site-c" in w for w in again.warnings)  # not in the project file: no new kit


def test_cli_init_writes_a_project_that_provisions(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "cfg" / "project.yml"
    ws = tmp_path / "ws"
    result = runner.invoke(provision_cli, ["--init", "-p", str(path)])
    assert result.exit_code == 0, result.output
    assert path.read_text().startswith("#")
    refused = runner.invoke(provision_cli, ["--init", "-p", str(path)])
    assert refused.exit_code != 0
    assert "already exists" in refused.output

    made = runner.invoke(provision_cli, ["-p", str(path), "-w", str(ws), "--format", "json"])
    assert made.exit_code == 0, made.output
    info = json.loads(made.output)
    assert info["new_ca"] is True
    assert len(info["participants"]) == 6
    for folder in info["participants"].values():
        verify_kit(folder)

    add = ["-w", str(ws), "--add-client", "site-3", "--org", "org-c"]
    added = runner.invoke(provision_cli, add)
    assert added.exit_code == 0, added.output
    assert "site-3" in added.output
    assert "the project's root CA" in added.output
    verify_kit(ws / "example-project" / "prod_00" / "site-3")
    admin = ["-w", str(ws), "--add-admin", "x@y.org", "--org", "y", "--role", "member"]
    assert runner.invoke(provision_cli, admin).exit_code == 0
    bad = runner.invoke(provision_cli, ["-w", str(ws), "--add-client", "site-4", "--role", "lead"])
    assert bad.exit_code != 0
    assert "--role is for admins" in bad.output
    missing = runner.invoke(provision_cli, ["-p", str(tmp_path / "none.yml"), "-w", str(ws)])
    assert missing.exit_code != 0
    assert "ember provision --init" in missing.output


GOOD = {
    "name": "p",
    "server": {"name": "fl.example.org", "port": 8002},
    "clients": [{"name": "site-1", "org": "a"}],
    "admins": [{"name": "a@a.org", "org": "a", "role": "lead"}],
}


def variant(**changes: object) -> dict[str, object]:
    data = json.loads(json.dumps(GOOD))
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        (variant(servr={}), ["servr: unknown key; did you mean 'server'?"]),
        (variant(server={"name": "fl.example.org"}), ["server.port: missing"]),
        (variant(server={"name": "fl", "port": "8002"}), ["server.port: must be an integer"]),
        (
            variant(clients=[{"name": "x", "org": "a"}, {"name": "X", "org": "b"}]),
            ["clients[1].name: 'X' is already taken by clients[0].name"],
        ),
        (variant(clients=[{"name": "a@b.org", "org": "a"}]), ["holds '@'"]),
        (variant(clients=[{"name": "site 1", "org": "a"}]), ["'site 1' is not a site name"]),
        (variant(clients=[{"name": "server", "org": "a"}]), ["'server' is reserved"]),
        (variant(clients=[{"name": "s", "org": False}]), ["clients[0].org: must be a string"]),
        (variant(admins=[{"name": "alice", "org": "a", "role": "lead"}]), ["not an e-mail"]),
        (
            variant(admins=[{"name": "a@a.org", "org": "a", "role": "leader"}]),
            ["unknown role 'leader'; did you mean 'lead'?"],
        ),
        (variant(connection_security="ssl"), ["must be one of mtls, tls, clear"]),
        (
            variant(clients=[{"name": "s", "org": "a", "hosts": "edge.a.org"}]),
            ["clients[0].hosts: must be a list of host names or IP addresses"],
        ),
        (
            variant(clients=[{"name": "s", "org": "a", "hosts": ["edge a"]}]),
            ["clients[0].hosts: 'edge a' is not a host name or IP address"],
        ),
        (
            variant(server={"name": "fl", "port": 0}, admins=[{"name": "a@a.org"}]),
            ["3 problems", "server.port", "admins[0].org: missing", "admins[0].role: missing"],
        ),
    ],
)
def test_bad_project_files_say_which_key_and_how_to_fix_it(
    data: dict[str, object], messages: list[str]
) -> None:
    with pytest.raises(ProjectError) as info:
        parse_project(data, "project.yml")
    for message in messages:
        assert message in str(info.value)


def test_a_sites_hosts_are_read_and_written_back() -> None:
    data = variant(clients=[{"name": "site-1", "org": "a", "hosts": ["edge.a.org", "10.0.0.7"]}])
    project = parse_project(data, "project.yml")
    assert project.clients[0].hosts == ("edge.a.org", "10.0.0.7")
    assert parse_project(project.to_dict()).clients[0].hosts == ("edge.a.org", "10.0.0.7")


def test_project_files_are_read_from_yaml(tmp_path: Path) -> None:
    project = load_project(PROJECT)
    assert project.server.hosts == ["localhost", "127.0.0.1"]
    assert [c.allow_custom_code for c in project.clients] == [True, False]
    assert parse_project(variant()).server.host == "fl.example.org"  # host defaults to name
    assert parse_project(project.to_dict()) == project  # to_dict round-trips
    broken = tmp_path / "broken.yml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ProjectError, match="not valid YAML"):
        load_project(broken)
    empty = tmp_path / "empty.yml"
    empty.write_text("# nothing\n")
    with pytest.raises(ProjectError, match="the file is empty"):
        load_project(empty)


POLICY = default_policy()


def may(
    role: str, right: str, actor: str = "me@a", org: str = "a", job: tuple[str, str] | None = None
) -> bool:
    submitter, submitter_org = job if job else (None, None)
    return allowed(
        POLICY,
        role=role,
        right=right,
        actor_org=org,
        job_submitter=submitter,
        job_submitter_org=submitter_org,
        actor_name=actor,
    )


OWN, SAME_ORG, OTHER_ORG = ("me@a", "a"), ("you@a", "a"), ("them@b", "b")


@pytest.mark.parametrize(
    ("role", "right", "job", "expected"),
    [
        ("lead", "submit_job", None, True),
        ("lead", "manage_job", OWN, True),
        ("lead", "manage_job", SAME_ORG, False),
        ("lead", "manage_job", OTHER_ORG, False),  # cannot abort another org's job
        ("lead", "download_job", OWN, True),
        ("lead", "download_job", OTHER_ORG, False),
        ("lead", "view", None, True),
        ("lead", "operate", None, False),
        ("member", "submit_job", None, False),
        ("member", "manage_job", OWN, False),
        ("member", "download_job", SAME_ORG, False),
        ("member", "view", None, True),
        ("org_admin", "submit_job", None, False),
        ("org_admin", "manage_job", SAME_ORG, True),
        ("org_admin", "manage_job", OTHER_ORG, False),
        ("org_admin", "download_job", SAME_ORG, True),
        ("org_admin", "download_job", OTHER_ORG, False),
        ("org_admin", "manage_job", None, False),  # a scoped right needs the job to decide
        ("project_admin", "submit_job", None, True),
        ("project_admin", "manage_job", OTHER_ORG, True),
        ("project_admin", "download_job", OTHER_ORG, True),
        ("project_admin", "operate", None, True),
        ("project_admin", "manage_job", None, True),
        ("intruder", "view", None, False),  # an unknown role has no rights
    ],
)
def test_default_policy(role: str, right: str, job: tuple[str, str] | None, expected: bool) -> None:
    assert may(role, right, job=job) is expected


def test_policy_edge_cases() -> None:
    # an empty organisation matches no one's
    assert not may("org_admin", "manage_job", actor="x@", org="", job=("y@", ""))
    with pytest.raises(PolicyError, match="unknown right 'abort'"):
        may("lead", "abort")
    bad = {"roles": {"lead": {"manage_job": "mine"}}}
    with pytest.raises(PolicyError, match=r"roles\.lead\.manage_job must be one of"):
        allowed(bad, "lead", "view", "a", None, None, "me@a")
    with pytest.raises(PolicyError, match='"roles"'):
        allowed({}, "lead", "view", "a", None, None, "me@a")
