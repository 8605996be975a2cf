"""Live log streaming across processes: a PoC site's log reaches the server while the job
runs, and ``ember job logs ID --site S --follow`` (the admin API) shows it in order."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.envs.poc import PocEnv, start_workspace, stop_workspace
from ember.system.admin import AdminClient
from ember.system.poc import PocWorkspace, prepare
from support.sim import numpy_recipe

LINES = 5  # streaming_client.LINES


@pytest.fixture(scope="module")
def poc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocWorkspace]:
    ws = prepare(tmp_path_factory.mktemp("poc-logs") / "ws", num_clients=2)
    start_workspace(ws)
    try:
        yield ws
    finally:
        stop_workspace(ws)


def test_following_a_sites_streamed_log_while_the_job_runs(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    recipe = numpy_recipe(
        "streaming_client.py", num_rounds=2, train_args=f"--gate {gate}", min_clients=1
    )
    recipe.enable_log_streaming()
    recipe.set_config("logs.stream_interval", 0.05)
    run = PocEnv(clients=["site-1"], workspace=poc.root).deploy(recipe)
    followed = ""
    with AdminClient(poc.admin.folder) as admin:
        for text in admin.follow_logs(run.get_job_id(), "site-1", wait=2.0):
            followed += text
            if f"site-1 round 0 line {LINES - 1}" in followed:
                # the script waits for this in round 1: its round-0 lines came while it ran
                (gate / "site-1.go").touch()
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    printed = [
        line[line.index("site-1 round") :]
        for line in followed.splitlines()
        if "site-1 round" in line
    ]
    assert printed == [f"site-1 round {r} line {i}" for r in range(2) for i in range(LINES)]

    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ember"),
            "job",
            "logs",
            run.get_job_id(),
            "--site",
            "site-1",
            "--follow",
            "--kit",
            str(poc.admin.folder),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == followed  # the whole streamed copy, once the job has ended
    with AdminClient(poc.admin.folder) as admin:
        reply = admin.read_logs(run.get_job_id(), "site-1", offset=0)
        assert reply["text"] == followed
        assert reply["finished"] is True
        with pytest.raises(Exception, match="not the name of a log file"):
            admin.read_logs(run.get_job_id(), "site-1", offset=0, file="../../meta.json")
    assert json.loads((Path(run.get_result()) / "meta.json").read_text())["status"] == (
        "FINISHED:COMPLETED"
    )
