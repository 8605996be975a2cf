"""A Flower app run through Ember (SimEnv: sites' SuperNodes talk to the SuperLink only
through the job's tunnel) gives the model Flower's own deployment gives; an abort ends every
Flower process. One round each: every Flower message starts a fresh ClientApp process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ember import SimEnv
from ember_flower import FlowerRecipe
from ember_flower.native import run_native

APP = Path(__file__).parents[2] / "examples" / "hello-flower"
pytestmark = pytest.mark.timeout(300)


def _flower_processes(folder: Path) -> list[str]:
    """Our processes whose FLWR_HOME lies under ``folder`` (every Flower process has one)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if f"FLWR_HOME={folder}".encode() in environ and stat.split()[2] != "Z":
            found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:120]!r}")
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
    assert _flower_processes(tmp_path) == []


def test_an_aborted_flower_job_ends_every_flower_process(tmp_path: Path) -> None:
    recipe = FlowerRecipe(APP, name="hello-abort", run_config={"num-server-rounds": 100})
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False, wait=False)
    run = recipe.execute(env)
    log = tmp_path / "hello-abort" / "server" / "flower_run.log"
    # abort once the run is under way (the ServerApp started its first round)
    for _ in range(1200):
        if log.exists() and "[ROUND 1/100]" in log.read_text():
            break
        if run.get_status().startswith("FINISHED"):
            pytest.fail(run.get_message())
        try:
            run.get_result(timeout=0.1)
        except Exception:  # RunTimeout: still running, as wanted
            continue
    run.abort()
    run.get_result(timeout=120)
    assert run.get_status() == "FINISHED:ABORTED", run.get_message()
    assert _flower_processes(tmp_path) == []
