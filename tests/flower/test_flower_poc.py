"""A Flower app in PocEnv: real server and client daemons, each site's SuperNode reaching the
SuperLink only through the job's tunnel over the hub (gRPC with mutual TLS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ember.envs.poc import PocEnv
from ember.system.poc import PocWorkspace
from ember_flower import FlowerRecipe

APP = Path(__file__).parents[2] / "examples" / "hello-flower"
pytestmark = pytest.mark.timeout(300)


def test_a_flower_app_runs_unmodified_in_pocenv(poc: PocWorkspace, tmp_path: Path) -> None:
    model = tmp_path / "poc.npz"
    recipe = FlowerRecipe(APP, name="hello-flower-poc", run_config={"model-path": str(model)})
    run = PocEnv(clients=["site-1", "site-2"], workspace=poc.root).deploy(recipe)
    server = Path(run.get_result(timeout=240)) / "server"
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    (record,) = [json.loads(line) for line in (server / "round_metrics.jsonl").open()]
    assert record["sites"] == ["site-1", "site-2"]
    assert set(record["metrics"]) == {"train_loss", "train_accuracy"}
    assert "tunnel flower closed after" in (server / "log.txt").read_text()
    weights = np.load(model)
    assert np.isfinite(weights["weights"]).all()
