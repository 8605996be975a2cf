"""Histogram-based XGBoost in PocEnv (real server and client processes, gRPC with mutual
TLS): every collective call crosses the hub as an Ember request, and the model is the same
as in SimEnv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgb_test_loaders as loaders

import xgboost as xgb
from ember import SimEnv
from ember.envs.poc import PocEnv
from ember.system.poc import PocWorkspace
from ember_xgboost.recipes import XGBHorizontalRecipe

COMPLETED = "FINISHED:COMPLETED"


def recipe() -> XGBHorizontalRecipe:
    return XGBHorizontalRecipe(
        name="xgb-poc",
        min_clients=2,
        num_rounds=3,
        early_stopping_rounds=None,
        xgb_params={"max_depth": 3, "objective": "binary:logistic", "nthread": 1},
        per_site_config={
            f"site-{i + 1}": {"data_loader": loaders.Rows(num_sites=2)} for i in range(2)
        },
    )


def test_horizontal_xgboost_gives_the_same_model_in_pocenv_as_in_simenv(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    sim = recipe().execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert sim.get_status() == COMPLETED, sim.get_message()
    run = PocEnv(clients=["site-1", "site-2"], workspace=poc.root).deploy(recipe())
    result = Path(run.get_result(timeout=240))
    assert run.get_status() == COMPLETED, run.get_message()
    _, _, xv, _ = loaders.data()
    models = [Path(sim.get_result()), result]
    got = [
        xgb.Booster(model_file=str(r / "server" / "xgboost_model.json")).predict(xgb.DMatrix(xv))
        for r in models
    ]
    np.testing.assert_array_equal(got[0], got[1])
    log = (result / "server" / "log.txt").read_text()
    assert "tunnel xgboost closed after" in log
