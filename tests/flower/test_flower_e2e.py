"""A Flower app run through Ember (SimEnv: sites' SuperNodes talk to the SuperLink only
through the job's tunnel) gives the model Flower's own deployment gives; an abort ends every
Flower process. One round each: every Flower message starts a fresh ClientApp process."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember import SimEnv
from ember_flower import FlowerRecipe
from ember_flower.native import run_native

APP = Path(__file__).parents[2] / "examples" / "hello-flower"
pytestmark = pytest.mark.timeout(300)


def _flower_processes(*homes: str | Path, command: str = "") -> list[str]:
    """Our live processes whose FLWR_HOME holds one of ``homes`` (every Flower process has
    its own) and whose command line holds ``command``: ``pid: command line``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        home = next((v for v in environ.split(b"\0") if v.startswith(b"FLWR_HOME=")), b"")
        cmdline = (proc / "cmdline").read_bytes() if home else b""
        if (
            any(str(h).encode() in home for h in homes)
            and command.encode() in cmdline
            and stat.rsplit(")", 1)[1].split()[0] != "Z"
        ):
            found.append(f"{proc.name}: {cmdline[:160]!r}")
    return found


def test_a_flower_app_through_ember_gives_the_model_of_flowers_own_deployment(
    tmp_path: Path,
) -> None:
    native_model = tmp_path / "native.npz"
    status = run_native(APP, 2, tmp_path / "native", {"model-path": str(native_model)})
    assert status == "finished:completed"

    ember_model = tmp_path / "ember.npz"
    recipe = FlowerRecipe(APP, name="hello-flower", run_config={"model-path": str(ember_model)})
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()

    ours, theirs = np.load(ember_model), np.load(native_model)
    np.testing.assert_array_equal(ours["weights"], theirs["weights"])
    np.testing.assert_array_equal(ours["bias"], theirs["bias"])
    server = Path(run.get_result()) / "server"
    (record,) = [json.loads(line) for line in (server / "round_metrics.jsonl").open()]
    assert set(record["metrics"]) == {"train_loss", "train_accuracy"}
    assert record["sites"] == ["site-1", "site-2"]
    log = (server / "log.txt").read_text()
    assert "tunnel flower closed after" in log
    assert "Aggregated MetricRecord" in (server / "flower_run.log").read_text()
    assert _flower_processes(tmp_path, _job_id(server)) == []


def _job_id(server: Path) -> str:
    found = re.search(r"job \S+ \((\w+)\) started", (server / "log.txt").read_text())
    assert found is not None
    return f"ember-flower-{found.group(1)}-"


def _when_round_one_runs(run: Any, server: Path) -> None:
    """Return once the ServerApp started its first round (bounded: the run's own end)."""
    log = server / "flower_run.log"
    for _ in range(1200):
        if log.exists() and "[ROUND 1/" in log.read_text():
            return
        try:
            run.get_result(timeout=0.1)  # returns only if the run ended: it must not
        except Exception:  # RunTimeout: still running, as wanted
            continue
        pytest.fail(f"the run ended before its first round: {run.get_message()}")
    pytest.fail("the Flower run did not reach its first round")


def test_an_aborted_flower_job_ends_every_flower_process(tmp_path: Path) -> None:
    recipe = FlowerRecipe(APP, name="hello-abort", run_config={"num-server-rounds": 100})
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False, wait=False)
    run = recipe.execute(env)
    server = tmp_path / "hello-abort" / "server"
    _when_round_one_runs(run, server)
    run.abort()
    run.get_result(timeout=120)
    assert run.get_status() == "FINISHED:ABORTED", run.get_message()
    assert _flower_processes(tmp_path, _job_id(server)) == []


def test_a_site_whose_supernode_is_killed_fails_the_job_by_name(tmp_path: Path) -> None:
    recipe = FlowerRecipe(APP, name="hello-kill", run_config={"num-server-rounds": 100})
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False, wait=False)
    run = recipe.execute(env)
    server = tmp_path / "hello-kill" / "server"
    _when_round_one_runs(run, server)
    found = _flower_processes(_job_id(server) + "site-2-", command="flower-supernode")
    (victim,) = [p for p in found if "ember_flower.guard" not in p]  # the SuperNode itself
    os.kill(int(victim.split(":")[0]), signal.SIGKILL)
    run.get_result(timeout=120)
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "site site-2 died during Flower run" in run.get_message()
    assert "SuperNode exited" in run.get_message()
    assert _flower_processes(tmp_path, _job_id(server)) == []


def test_a_flower_run_that_fails_ends_the_job_with_flowers_error(tmp_path: Path) -> None:
    # the ServerApp saves its model into a folder that does not exist: Flower's run fails
    bad = tmp_path / "no-such-folder" / "model.npz"
    recipe = FlowerRecipe(APP, name="hello-fails", run_config={"model-path": str(bad)})
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "no-such-folder" in run.get_message()
    assert _flower_processes(tmp_path, _job_id(Path(run.get_result()) / "server")) == []
