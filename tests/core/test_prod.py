"""ProdEnv on a provisioned project: each participant started from its own kit, roles
enforced by the server and by the sites, tampered or foreign kits refused, a site added later.

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ember.envs.prod import ProdEnv
from ember.provision.certs import CertFiles, make_cert
from ember.system.admin import AdminClient
from ember.system.kit import Kit, KitError
from ember.system.poc import free_port
from support.filters import arrivals, dict_recipe, wire_filters
from support.sim import global_model, numpy_recipe

EMBER = str(Path(sys.executable).parent / "ember")
COMPLETED = "FINISHED:COMPLETED"
PROJECT = """\
name: ember-test
server:
  name: localhost
  port: {port}
connection_security: mtls
clients:
  - name: site-a
    org: org-a
  - name: site-b
    org: org-b
    allow_custom_code: false
admins:
  - name: lead@org-a.example
    org: org-a
    role: lead
  - name: lead@org-b.example
    org: org-b
    role: lead
  - name: member@org-b.example
    org: org-b
    role: member
  - name: admin@org-a.example
    org: org-a
    role: project_admin
"""


def ember(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([EMBER, *args], capture_output=True, text=True, timeout=180)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("prod")
    (root / "project.yml").write_text(PROJECT.format(port=free_port()))
    out = json.loads(
        ember(
            "provision", "-p", str(root / "project.yml"), "-w", str(root / "ws"), "--format", "json"
        ).stdout
    )
    kits = {name: Path(folder) for name, folder in out["participants"].items()}
    started = []
    try:
        for name in ("localhost", "site-a", "site-b"):  # each from its own kit
            ember("daemon", "start", "--kit", str(kits[name]))
            started.append(kits[name])
        yield {**kits, "ws": root / "ws", "root": root}
    finally:
        for folder in reversed(started):  # clients first, then the server
            ember("daemon", "stop", "--kit", str(folder), check=False)


def admin(project: dict[str, Path], name: str) -> AdminClient:
    return AdminClient(project[name]).connect(10.0)


def test_lead_runs_hello_numpy_through_prodenv_and_roles_hold(
    project: dict[str, Path], tmp_path: Path
) -> None:
    # site-b runs no custom code: a job with a training script is refused there
    env_b = ProdEnv(
        project["lead@org-a.example"],
        username="lead@org-a.example",
        sites=["site-a", "site-b"],
        result_root=tmp_path / "r",
    )
    refused = numpy_recipe(num_rounds=1).execute(env_b)
    refused.get_result(timeout=120)
    assert refused.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "site-b runs no custom code" in refused.get_message()

    env = ProdEnv(project["lead@org-a.example"], sites=["site-a"], result_root=tmp_path / "r")
    run = numpy_recipe(num_rounds=2, min_clients=1).execute(env)
    result = Path(run.get_result(timeout=180))
    assert run.get_status() == COMPLETED, run.get_message()
    expected = np.arange(6, dtype=np.float32).reshape(2, 3) + 2
    np.testing.assert_array_equal(global_model(result), expected)

    # another org's lead submits; lead A may neither abort nor download that job
    with admin(project, "lead@org-b.example") as lead_b:
        job_dir = numpy_recipe(num_rounds=1, min_clients=1).export(tmp_path / "job-b")
        other = lead_b.submit(job_dir, sites=["site-a"])
        assert lead_b.status(other["id"], wait=120)["status"] == COMPLETED
    with admin(project, "lead@org-a.example") as lead_a:
        with pytest.raises(Exception, match="may not manage_job"):
            lead_a.abort(other["id"])
        with pytest.raises(Exception, match="may not download_job"):
            lead_a.download(other["id"], tmp_path / "not-mine")
        lead_a.download(run.get_job_id(), tmp_path / "mine")  # its own: fine
    # a member may look, not submit
    with admin(project, "member@org-b.example") as member:
        assert other["id"] in [j["id"] for j in member.list_jobs()]
        with pytest.raises(Exception, match="may not submit_job"):
            member.submit(job_dir)


def test_a_tampered_kit_refuses_to_start(project: dict[str, Path], tmp_path: Path) -> None:
    copy = Path(shutil.copytree(project["site-a"], tmp_path / "site-a"))
    kit_json = copy / "startup" / "kit.json"
    data = json.loads(kit_json.read_text())
    data["port"] += 1  # point the site elsewhere
    kit_json.write_text(json.dumps(data))
    done = ember("daemon", "start", "--kit", str(copy), check=False)
    assert done.returncode != 0
    assert "kit.json was altered" in done.stderr
    with pytest.raises(KitError, match="altered"):
        Kit.load(copy)


def test_foreign_and_expired_certificates_are_refused(
    project: dict[str, Path], tmp_path: Path
) -> None:
    from ember.net import ConnectError, NetNode

    server = Kit.load(project["localhost"])
    # another project's kit (another CA) for a site of the same name
    other = tmp_path / "other.yml"
    other.write_text(PROJECT.format(port=server.port).replace("ember-test", "other-project"))
    out = json.loads(
        ember("provision", "-p", str(other), "-w", str(tmp_path / "ws"), "--format", "json").stdout
    )
    foreign = Kit.load(out["participants"]["site-a"])
    node = NetNode("site-a", server.address, foreign.tls, server_name=server.host)
    with pytest.raises(ConnectError):
        node.start(10.0)
    node.close()
    # this project's CA, but a certificate that expired yesterday
    ca = CertFiles(
        project["ws"] / "ember-test" / "state" / "rootCA.pem",
        project["ws"] / "ember-test" / "state" / "rootCA.key",
    )
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    expired = make_cert(
        ca, "site-a", tmp_path / "expired", kind="client", org="org-a", days=1, not_before=past
    )
    tls = Kit.load(project["site-a"]).tls
    node = NetNode(
        "site-a",
        server.address,
        type(tls)(tls.ca, expired.cert, expired.key),
        server_name=server.host,
    )
    with pytest.raises(ConnectError):
        node.start(10.0)
    node.close()


def test_a_site_added_later_joins_without_reprovisioning(
    project: dict[str, Path], tmp_path: Path
) -> None:
    before = {
        name: (project[name] / "startup" / "manifest.json").read_bytes()
        for name in ("localhost", "site-a", "site-b", "lead@org-a.example")
    }
    out = json.loads(
        ember(
            "provision",
            "-w",
            str(project["ws"]),
            "--add-client",
            "site-c",
            "--org",
            "org-c",
            "--format",
            "json",
        ).stdout
    )
    site_c = Path(out["participants"]["site-c"])
    for name, manifest in before.items():  # nobody else's kit changed
        assert (project[name] / "startup" / "manifest.json").read_bytes() == manifest
    ember("daemon", "start", "--kit", str(site_c))
    try:
        with admin(project, "lead@org-a.example") as lead:
            assert "site-c" in lead.system()["clients"]
        env = ProdEnv(
            project["lead@org-a.example"], sites=["site-a", "site-c"], result_root=tmp_path / "r"
        )
        run = numpy_recipe(num_rounds=1).execute(env)
        run.get_result(timeout=180)
        assert run.get_status() == COMPLETED, run.get_message()
    finally:
        ember("daemon", "stop", "--kit", str(site_c), check=False)


@pytest.mark.parametrize("security", ["tls", "clear"])
def test_a_job_runs_with_each_connection_security(security: str, tmp_path: Path) -> None:
    text = PROJECT.format(port=free_port()).replace("mtls", security)
    (tmp_path / "project.yml").write_text(text)
    out = json.loads(
        ember(
            "provision",
            "-p",
            str(tmp_path / "project.yml"),
            "-w",
            str(tmp_path / "ws"),
            "--format",
            "json",
        ).stdout
    )
    kits = {name: Path(folder) for name, folder in out["participants"].items()}
    assert Kit.load(kits["site-a"]).connection_security == security
    started = []
    try:
        for name in ("localhost", "site-a"):
            ember("daemon", "start", "--kit", str(kits[name]))
            started.append(kits[name])
        env = ProdEnv(kits["lead@org-a.example"], sites=["site-a"], result_root=tmp_path / "r")
        run = numpy_recipe(num_rounds=1, min_clients=1).execute(env)
        result = Path(run.get_result(timeout=180))
        assert run.get_status() == COMPLETED, run.get_message()
        expected = np.arange(6, dtype=np.float32).reshape(2, 3) + 1
        np.testing.assert_array_equal(global_model(result), expected)
        # roles hold in every mode: identities come from the certificates
        job_dir = numpy_recipe(num_rounds=1, min_clients=1).export(tmp_path / "job")
        member = AdminClient(kits["member@org-b.example"]).connect(10.0)
        with member, pytest.raises(Exception, match="may not submit_job"):
            member.submit(job_dir)
    finally:
        for folder in reversed(started):
            ember("daemon", "stop", "--kit", str(folder), check=False)


def test_only_an_operator_stops_a_site(project: dict[str, Path]) -> None:
    # runs after the tests that use site-b: it stops site-b's daemon
    from ember.system.daemon import pid_of, wait_gone

    lead = admin(project, "lead@org-a.example")
    with lead, pytest.raises(Exception, match="may not operate"):
        lead.stop_site("site-b")
    pid = pid_of(project["site-b"])
    assert pid is not None
    with admin(project, "admin@org-a.example") as operator:
        assert operator.stop_site("site-b") == {"site": "site-b", "stopping": True}
    assert wait_gone(pid, 60.0), "site-b's daemon did not stop"


def test_a_site_policy_in_its_kit_holds_in_prodenv_whatever_the_job_adds(
    project: dict[str, Path], tmp_path: Path
) -> None:
    policy = project["site-a"] / "local" / "privacy.json"
    policy.parent.mkdir(exist_ok=True)
    rule = {"direction": "output", "name": "ExcludeVars", "args": {"exclude_vars": "^private\\."}}
    policy.write_text(json.dumps({"format": 1, "filters": [rule]}))
    try:
        filters = wire_filters()
        recipe = dict_recipe(num_rounds=1, min_clients=1)
        recipe.add_client_output_filter(filters.PutBack("private.stats"))  # tries to undo it
        seen = tmp_path / "arrivals.jsonl"
        recipe.add_server_input_filter(filters.RecordArrivals(str(seen)))
        env = ProdEnv(project["lead@org-a.example"], sites=["site-a"], result_root=tmp_path / "r")
        run = recipe.execute(env)
        run.get_result(timeout=180)
        assert run.get_status() == COMPLETED, run.get_message()
        assert [(a["site"], a["names"]) for a in arrivals(seen)] == [("site-a", ["w"])]
    finally:
        policy.unlink()
