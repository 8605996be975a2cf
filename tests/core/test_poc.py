"""PocEnv: a real server and real clients as processes on loopback, gRPC with mutual TLS.

One PoC system (3 clients) serves every test of this module; each test bounds its waits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ember.envs.poc import PocEnv, PocRun, start_workspace, stop_workspace
from ember.system import daemon
from ember.system.admin import AdminClient
from ember.system.poc import PocWorkspace, prepare
from support.filters import arrivals, dict_recipe, wire_filters
from support.sim import global_model, numpy_recipe, run_sim

COMPLETED = "FINISHED:COMPLETED"
FAILED = "FINISHED:EXECUTION_EXCEPTION"
SITES3 = ["site-1", "site-2", "site-3"]


@pytest.fixture(scope="module")
def poc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocWorkspace]:
    ws = prepare(tmp_path_factory.mktemp("poc") / "ws", num_clients=3)
    start_workspace(ws)
    try:
        yield ws
    finally:
        pids = [daemon.pid_of(k.folder) for k in ws.participants]
        stop_workspace(ws)
        for pid in pids:  # nothing outlives `poc stop`
            if pid is not None:
                assert not alive(pid)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(path: Path, timeout: float = 60.0) -> None:
    """Wait for a script to reach a point (it writes ``path``)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.05)


def submit(ws: PocWorkspace, recipe, sites: list[str]) -> PocRun:  # type: ignore[no-untyped-def]
    env = PocEnv(clients=sites, workspace=ws.root)
    return env.deploy(recipe)


def test_same_recipe_same_bits_in_simenv_and_pocenv(poc: PocWorkspace, tmp_path: Path) -> None:
    recipe = numpy_recipe(num_rounds=3, train_args="--noise")
    sim = run_sim(recipe, tmp_path)
    assert sim.get_status() == COMPLETED, sim.get_message()
    run = submit(poc, numpy_recipe(num_rounds=3, train_args="--noise"), ["site-1", "site-2"])
    result = Path(run.get_result(timeout=240))
    assert run.get_status() == COMPLETED, run.get_message()
    expected = global_model(sim.get_result())
    got = global_model(result)
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()  # bit for bit
    records = (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["sites"] for r in records] == [["site-1", "site-2"]] * 3


def transfers(log: str) -> dict[str, dict[str, int]]:
    """A job process's last ``transfers:`` line: what it pulled, by owner."""
    return json.loads(re.findall(r"transfers: (\{.*\})", log)[-1])  # type: ignore[no-any-return]


def test_large_arrays_travel_over_data_links_both_ways(poc: PocWorkspace) -> None:
    initial = np.arange(1 << 20, dtype=np.float32).reshape(1024, 1024)  # 4 MiB: pulled
    models = {}
    # scripts in the job process, then through the hub, then scripts in their own process
    # (the site's job process relays what the server pulls from the script)
    for links, external in ((True, False), (False, False), (True, True)):
        recipe = numpy_recipe(num_rounds=2, model=initial, launch_external_process=external)
        recipe.set_config("net.data_links", links)
        run = submit(poc, recipe, ["site-1", "site-2"])
        result = Path(run.get_result(timeout=240))
        assert run.get_status() == COMPLETED, run.get_message()
        models[links, external] = global_model(result)
        uploads = transfers((result / "server" / "log.txt").read_text())
        with AdminClient(poc.admin) as admin:
            downloads = {
                s: transfers(admin.logs(run.get_job_id(), s)) for s in ("site-1", "site-2")
            }
        for site in ("site-1", "site-2"):
            (up,) = (v for k, v in uploads.items() if k.startswith(f"{site}.job."))
            (down,) = downloads[site].values()  # an external script's: relayed by the site
            for pulled in (up, down):  # two rounds of the model
                assert pulled["bytes"] > 2 * initial.nbytes
                if external and pulled is down:  # chunks in flight beyond the connections
                    assert 0 < pulled["link_bytes"] <= pulled["bytes"]  # take the hub
                else:
                    assert pulled["link_bytes"] == (pulled["bytes"] if links else 0)
    assert {m.tobytes() for m in models.values()} == {(initial + 2).tobytes()}


def test_cli_job_commands(poc: PocWorkspace, tmp_path: Path) -> None:
    job_dir = numpy_recipe(num_rounds=1).export(tmp_path / "job")
    kit = str(poc.admin.folder)

    def ember(*args: str) -> str:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ember"), *args, "--kit", kit, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    record = json.loads(ember("job", "submit", str(job_dir), "--sites", "site-1,site-3"))
    job_id = record["id"]
    status = json.loads(ember("job", "status", job_id, "--wait", "200"))
    assert status["status"] == COMPLETED, status
    assert status["sites"] == ["site-1", "site-3"]
    assert job_id in [j["id"] for j in json.loads(ember("job", "list"))]
    out = tmp_path / "result"
    assert json.loads(ember("job", "download", job_id, "-o", str(out)))["path"] == str(out)
    assert np.array_equal(global_model(out), np.arange(6, dtype=np.float32).reshape(2, 3) + 1)
    server_log = json.loads(ember("job", "logs", job_id))["text"]
    assert "started on site-1, site-3" in server_log
    site_log = json.loads(ember("job", "logs", job_id, "--site", "site-3"))["text"]
    assert "received task train" in site_log


def test_a_client_killed_mid_round_above_min_clients(poc: PocWorkspace, tmp_path: Path) -> None:
    recipe = numpy_recipe(num_rounds=3, min_clients=2, train_args=f"--block site-3:1:{tmp_path}")
    run = submit(poc, recipe, SITES3)
    wait_for(tmp_path / "site-3-1.started")
    site3 = next(k for k in poc.clients if k.name == "site-3")
    pid = daemon.pid_of(site3.folder)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # the client daemon; its job process follows it
    result = Path(run.get_result(timeout=240))
    assert run.get_status() == COMPLETED, run.get_message()
    records = [json.loads(r) for r in (result / "server" / "round_metrics.jsonl").open()]
    assert records[0]["sites"] == SITES3
    assert "site-3" in records[1]["failed"]
    assert records[2]["sites"] == ["site-1", "site-2"]
    # a job for all three sites waits in the queue while site-3 is down (the admin API:
    # PocEnv would restart the missing daemon)...
    job_dir = numpy_recipe(num_rounds=1).export(tmp_path / "again")
    with AdminClient(poc.admin) as admin:
        record = admin.submit(job_dir, sites=SITES3)
        assert admin.status(record["id"])["status"] == "SUBMITTED"
        # ...and runs once the restarted client has reconnected
        daemon.start("client", site3.folder)
        assert admin.status(record["id"], wait=200)["status"] == COMPLETED


def test_below_min_clients_the_job_fails_with_the_reason(poc: PocWorkspace, tmp_path: Path) -> None:
    recipe = numpy_recipe(num_rounds=2, min_clients=3, train_args=f"--block site-2:0:{tmp_path}")
    run = submit(poc, recipe, SITES3)
    wait_for(tmp_path / "site-2-0.started")
    site2 = next(k for k in poc.clients if k.name == "site-2")
    pid = daemon.pid_of(site2.folder)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    run.get_result(timeout=120)
    assert run.get_status() == FAILED
    assert "min_clients=3" in run.get_message()
    assert "site-2" in run.get_message()
    daemon.start("client", site2.folder)


def test_a_killed_server_job_process_fails_the_job_not_the_server(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    recipe = numpy_recipe(num_rounds=2, train_args=f"--block site-1:0:{tmp_path}")
    run = submit(poc, recipe, ["site-1", "site-2"])
    wait_for(tmp_path / "site-1-0.started")
    with AdminClient(poc.admin) as admin:
        pid = admin.system()["running_jobs"][run.get_job_id()]
    os.kill(pid, signal.SIGKILL)
    run.get_result(timeout=120)
    assert run.get_status() == FAILED
    assert "signal 9" in run.get_message()
    again = submit(poc, numpy_recipe(num_rounds=1), ["site-1", "site-2"])
    again.get_result(timeout=240)
    assert again.get_status() == COMPLETED, again.get_message()


def test_abort_a_running_job(poc: PocWorkspace, tmp_path: Path) -> None:
    recipe = numpy_recipe(num_rounds=2, train_args=f"--block site-2:0:{tmp_path}")
    run = submit(poc, recipe, ["site-1", "site-2"])
    wait_for(tmp_path / "site-2-0.started")
    run.abort()
    run.get_result(timeout=120)
    assert run.get_status() == "FINISHED:ABORTED"
    assert "aborted by admin@ember.local" in run.get_message()


def test_certificates_from_another_project_are_refused(poc: PocWorkspace, tmp_path: Path) -> None:
    from ember.net import ConnectError, NetNode

    other = prepare(tmp_path / "other", num_clients=1, port=poc.server.port)
    foreign = other.clients[0]
    node = NetNode(foreign.name, poc.server.address, foreign.tls, server_name=poc.server.host)
    with pytest.raises(ConnectError):
        node.start(10.0)
    node.close()
    # a site's own (valid) certificate does not make it an admin
    site = poc.clients[0]
    fake = NetNode(f"admin:{site.name}:x", poc.server.address, site.tls, server_name=site.host)
    with pytest.raises(ConnectError, match="not an admin"):
        fake.start(10.0)
    fake.close()


def test_poc_cli_prepare_start_status_stop(tmp_path: Path) -> None:
    ember = str(Path(sys.executable).parent / "ember")
    ws = tmp_path / "cli-ws"

    def run(*args: str) -> dict:  # type: ignore[type-arg]
        done = subprocess.run(
            [ember, "poc", *args, "-w", str(ws), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    prepared = run("prepare", "--clients", "north,south")
    assert prepared["clients"] == ["north", "south"]
    started = run("start")
    pids = [d["pid"] for d in started["daemons"]]
    assert all(pids), started
    assert [d["name"] for d in started["daemons"]] == ["server", "north", "south"]
    again = subprocess.run(
        [ember, "poc", "prepare", "-w", str(ws)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert run("stop")["stopped"] == ["north", "south", "server"]
    assert all(d["pid"] is None for d in run("status")["daemons"])
    for pid in pids:
        assert not alive(pid)


def test_a_site_policy_holds_in_pocenv_whatever_the_job_adds(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    # site-1's admin excludes private.* in the site's local/privacy.json; the job puts the
    # variable back with a filter of its own; what reaches the server process says who won
    filters = wire_filters()
    (site_1,) = [k for k in poc.clients if k.name == "site-1"]
    policy = site_1.folder / "local" / "privacy.json"
    policy.parent.mkdir(exist_ok=True)
    rule = {"direction": "output", "name": "ExcludeVars", "args": {"exclude_vars": "^private\\."}}
    policy.write_text(json.dumps({"format": 1, "filters": [rule]}))
    try:
        recipe = dict_recipe(num_rounds=1)
        recipe.add_client_output_filter(filters.PutBack("private.stats"))
        seen = tmp_path / "arrivals.jsonl"
        recipe.add_server_input_filter(filters.RecordArrivals(str(seen)))
        run = submit(poc, recipe, ["site-1", "site-2"])
        run.get_result(timeout=240)
        assert run.get_status() == COMPLETED, run.get_message()
        names = {a["site"]: a["names"] for a in arrivals(seen)}
        assert names == {"site-1": ["w"], "site-2": ["private.stats", "w"]}
        # a policy the site cannot apply fails the job there, naming the site and the file
        policy.write_text(json.dumps({"format": 1, "filters": [{**rule, "args": {"x": 1}}]}))
        run = submit(poc, dict_recipe(num_rounds=1), ["site-1", "site-2"])
        run.get_result(timeout=240)
        assert run.get_status() == FAILED
        assert "site-1" in run.get_message()
        assert str(policy) in run.get_message()
    finally:
        policy.unlink()
