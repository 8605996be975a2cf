"""A PoC job outlives ``kill -9`` of its server: the restarted daemon resumes it from its last
round checkpoint, the client daemons reconnect and start its site processes again, the
admin's Run handle reconnects, and the final model is bit-identical to an uninterrupted run.

Each test has its own PoC system (two sites): the server is killed under it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.config import reset_process_config
from ember.envs.poc import PocEnv, PocRun, RunConnectionError, start_workspace, stop_workspace
from ember.runtime.checkpoint import MODEL_FILE, checkpoint_folder
from ember.system import daemon
from ember.system.admin import AdminClient
from ember.system.poc import PocWorkspace, prepare
from support.sim import global_model, numpy_recipe, round_records, run_sim

COMPLETED = "FINISHED:COMPLETED"
FAILED = "FINISHED:EXECUTION_EXCEPTION"
SITES = ["site-1", "site-2"]
ROUNDS = 4


@pytest.fixture
def poc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PocWorkspace]:
    # the daemons inherit these: clients dial a restarted server again within half a second
    monkeypatch.setenv("EMBER_NET_RECONNECT_BACKOFF_MAX", "0.5")
    reset_process_config()
    ws = prepare(tmp_path / "ws", num_clients=2)
    start_workspace(ws)
    try:
        yield ws
    finally:
        stop_workspace(ws)
        monkeypatch.undo()
        reset_process_config()


def wait_for(path: Path, timeout: float = 60.0) -> None:
    """Wait for a script to reach a point (it writes ``path``)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.05)  # polling a file another process writes: no event to wait on


def recipe(markers: Path, *blocks: str):  # type: ignore[no-untyped-def]
    """Four deterministic rounds; each ``SITE:ROUND`` blocks once (writing its marker)."""
    args = "--noise" + "".join(f" --block-once {b}:{markers}" for b in blocks)
    return numpy_recipe(num_rounds=ROUNDS, train_args=args)


def kill_server(ws: PocWorkspace, job_id: str) -> None:
    """``kill -9`` of the server daemon and the job's server process; returns once gone."""
    with AdminClient(ws.admin) as admin:
        job_pid = admin.system()["running_jobs"][job_id]
    server_pid = daemon.pid_of(ws.server.folder)
    assert server_pid is not None
    os.kill(server_pid, signal.SIGKILL)
    os.kill(job_pid, signal.SIGKILL)
    for pid in (server_pid, job_pid):
        assert daemon.wait_gone(pid, 10.0)
    assert daemon.pid_of(ws.server.folder) is None


def restart_server(ws: PocWorkspace) -> None:
    daemon.start("server", ws.server.folder)


def ember(*args: str) -> str:
    """The ``ember`` command line; its output."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ember"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def reference(tmp_path: Path) -> bytes:
    sim = run_sim(recipe(tmp_path), tmp_path / "ref")
    assert sim.get_status() == COMPLETED, sim.get_message()
    return global_model(sim.get_result()).tobytes()


def test_a_job_resumes_bit_identically_after_the_server_is_killed_mid_round(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    expected = reference(tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    run = PocEnv(clients=SITES, workspace=poc.root).deploy(recipe(markers, "site-1:2"))
    wait_for(markers / "site-1-2.started")  # round 1 is checkpointed, round 2 in flight
    kill_server(poc, run.get_job_id())
    # the Run handle waits across the restart (its first tries find no server)
    restarter = threading.Thread(target=restart_server, args=(poc,))
    restarter.start()
    try:
        status = run.get_status()
    finally:
        restarter.join()
    assert status == "RUNNING"
    result = Path(run.get_result(timeout=120))
    assert run.get_status() == COMPLETED, run.get_message()
    assert global_model(result).tobytes() == expected  # bit for bit
    assert [r["round"] for r in round_records(result)] == list(range(ROUNDS))
    with AdminClient(poc.admin) as admin:
        record = admin.status(run.get_job_id())
    assert record["resumed"] == "resumed from round 1"
    assert record["restarts"] == 1
    log = (result / "server" / "log.txt").read_text()
    assert "resumed from round 1" in log
    shown = ember("job", "status", run.get_job_id(), "--kit", str(poc.admin.folder))
    assert "resumed: resumed from round 1" in shown


def test_killed_in_round_0_and_again_in_round_2_the_job_still_completes_bit_identically(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    expected = reference(tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    run = PocEnv(clients=SITES, workspace=poc.root).deploy(recipe(markers, "site-2:0", "site-1:2"))
    wait_for(markers / "site-2-0.started")  # nothing checkpointed yet
    kill_server(poc, run.get_job_id())
    restart_server(poc)
    with AdminClient(poc.admin) as admin:
        first = admin.status(run.get_job_id())["resumed"]
    assert first == "restarted from the beginning (no round was checkpointed)"
    wait_for(markers / "site-1-2.started")
    kill_server(poc, run.get_job_id())
    ember("poc", "start", "-w", str(poc.root))  # starts the server; the clients run on
    result = Path(run.get_result(timeout=120))
    assert run.get_status() == COMPLETED, run.get_message()
    assert global_model(result).tobytes() == expected
    with AdminClient(poc.admin) as admin:
        record = admin.status(run.get_job_id())
    assert (record["resumed"], record["restarts"]) == ("resumed from round 1", 2)


CONTROLLERS = Path(__file__).parent / "fixtures" / "controllers"


@pytest.fixture
def controllers_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server daemons (started after this) import the test controllers."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(CONTROLLERS), path) if p))


def test_killed_between_two_rounds_the_job_resumes_at_the_next_one_bit_identically(
    controllers_path: None, poc: PocWorkspace, tmp_path: Path
) -> None:
    expected = reference(tmp_path)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    job = recipe(tmp_path)
    workflow = job.job.workflows[0]
    workflow["target"] = "pause_between_rounds:PauseBetweenRounds"
    workflow["args"] = {**workflow["args"], "pause_dir": str(pauses), "before_round": 2}
    run = PocEnv(clients=SITES, workspace=poc.root).deploy(job)
    wait_for(pauses / "before-2")  # round 1 checkpointed, round 2 not yet posted
    kill_server(poc, run.get_job_id())
    restart_server(poc)
    result = Path(run.get_result(timeout=120))
    assert run.get_status() == COMPLETED, run.get_message()
    assert global_model(result).tobytes() == expected
    assert [r["round"] for r in round_records(result)] == list(range(ROUNDS))
    with AdminClient(poc.admin) as admin:
        assert admin.status(run.get_job_id())["resumed"] == "resumed from round 1"


def test_an_unreadable_checkpoint_fails_the_resumed_job_naming_the_file(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    run: PocRun = PocEnv(clients=SITES, workspace=poc.root).deploy(recipe(markers, "site-1:2"))
    wait_for(markers / "site-1-2.started")
    kill_server(poc, run.get_job_id())
    server_dir = poc.server.folder / "jobs" / run.get_job_id() / "workspace" / "server"
    model_file = checkpoint_folder(server_dir, 0) / MODEL_FILE
    model_file.write_bytes(model_file.read_bytes()[:20])  # cut short
    restart_server(poc)
    run.get_result(timeout=60)
    assert run.get_status() == FAILED
    assert str(model_file) in run.get_message()
    assert "cannot resume" in run.get_message()


def test_a_run_handle_without_its_server_raises_after_the_reconnect_setting(
    poc: PocWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    run = PocEnv(clients=SITES, workspace=poc.root).deploy(recipe(markers, "site-1:1"))
    wait_for(markers / "site-1-1.started")
    kill_server(poc, run.get_job_id())
    monkeypatch.setenv("EMBER_SYSTEM_RUN_RECONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("EMBER_NET_CONNECT_TIMEOUT", "0.2")
    reset_process_config()
    with pytest.raises(RunConnectionError, match=re.escape("system.run_reconnect_timeout = 0.5 s")):
        run.get_status()
    monkeypatch.delenv("EMBER_SYSTEM_RUN_RECONNECT_TIMEOUT")
    monkeypatch.delenv("EMBER_NET_CONNECT_TIMEOUT")
    reset_process_config()
    restart_server(poc)  # and the same handle works again
    run.get_result(timeout=120)
    assert run.get_status() == COMPLETED, run.get_message()


def wait_for_text(path: Path, text: str, timeout: float = 60.0) -> None:
    """Wait for a log to say ``text``."""
    deadline = time.monotonic() + timeout
    while not (path.is_file() and text in path.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{path} did not say {text!r} within {timeout}s"
        time.sleep(0.05)  # polling a file another process writes: no event to wait on


def test_a_site_whose_daemon_restarts_mid_job_rejoins_at_the_next_round(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    gate = tmp_path / "go"
    # site-2 blocks in round 1 (its daemon is killed there); site-1 holds round 1 open
    # until the restarted site-2 is back, so round 2 is the next one
    args = f"--block-once site-2:1:{markers} --gate site-1:1:{gate}"
    job = numpy_recipe(num_rounds=ROUNDS, min_clients=1, train_args=args)
    run = PocEnv(clients=SITES, workspace=poc.root).deploy(job)
    wait_for(markers / "site-2-1.started")
    site2 = next(k for k in poc.clients if k.name == "site-2")
    pid = daemon.pid_of(site2.folder)
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # the client daemon; its job process follows it
    assert daemon.wait_gone(pid, 10.0)
    daemon.start("client", site2.folder)
    server_log = poc.server.folder / "jobs" / run.get_job_id() / "workspace" / "server" / "log.txt"
    wait_for_text(server_log, "site site-2 restarted: it rejoins at its next task")
    gate.write_text("go")
    result = Path(run.get_result(timeout=120))
    assert run.get_status() == COMPLETED, run.get_message()
    records = round_records(result)
    assert records[0]["sites"] == SITES
    assert records[1]["sites"] == ["site-1"]
    assert "site-2 restarted while it ran this task" in records[1]["failed"]["site-2"]
    assert records[2]["sites"] == records[3]["sites"] == SITES  # rejoined at the next round


def kill_server_with_site_2_down(ws: PocWorkspace, tmp_path: Path) -> PocRun:
    """A job running when the server is killed, site-2's daemon stopped before the restart."""
    markers = tmp_path / "markers"
    markers.mkdir()
    run = PocEnv(clients=SITES, workspace=ws.root).deploy(recipe(markers, "site-1:1"))
    wait_for(markers / "site-1-1.started")
    kill_server(ws, run.get_job_id())
    site2 = next(k for k in ws.clients if k.name == "site-2")
    assert daemon.stop(site2.folder)
    return run


def test_a_job_whose_site_does_not_come_back_fails_after_the_resume_timeout_naming_it(
    poc: PocWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = kill_server_with_site_2_down(poc, tmp_path)
    monkeypatch.setenv("EMBER_SYSTEM_RESUME_TIMEOUT", "0.5")  # the restarted daemon's
    restart_server(poc)
    run.get_result(timeout=60)
    assert run.get_status() == FAILED
    message = run.get_message()
    assert "site-2 did not reconnect within system.resume_timeout = 0.5 s" in message
    assert "ember daemon start" in message


def test_a_job_waiting_for_its_sites_after_a_restart_can_be_aborted(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    run = kill_server_with_site_2_down(poc, tmp_path)
    restart_server(poc)
    assert run.get_status() == "RUNNING"  # waiting for site-2 (system.resume_timeout: 300 s)
    run.abort()
    run.get_result(timeout=60)
    assert run.get_status() == "FINISHED:ABORTED"
    assert "aborted by admin@ember.local" in run.get_message()


def test_a_server_stopped_while_a_job_waits_to_resume_aborts_it(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    from ember.system.jobstore import JobStore

    run = kill_server_with_site_2_down(poc, tmp_path)
    restart_server(poc)
    assert run.get_status() == "RUNNING"  # waiting for site-2
    assert daemon.stop(poc.server.folder)  # SIGTERM: a stop, not a crash
    store = JobStore(poc.server.folder)
    try:
        record = store.get(run.get_job_id())
    finally:
        store.close()
    assert record is not None
    assert (record.status, record.message) == ("FINISHED:ABORTED", "the server stopped")
