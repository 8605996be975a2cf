"""EdgeFedBuffRecipe in SimEnv: two aggregator sites of 200 simulated devices each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from edge_digits import DigitsDevice, accuracy, initial_model

from ember import SimEnv
from ember.plugins import get_registry
from ember.recipes import RecipeArgumentError
from ember_edge.recipes import (
    DeviceManagerConfig,
    EdgeFedBuffRecipe,
    EvaluatorConfig,
    GatewayConfig,
    ModelManagerConfig,
    SimulationConfig,
)
from support.sim import round_records

COMPLETED = "FINISHED:COMPLETED"


def _recipe(**kwargs: Any) -> EdgeFedBuffRecipe:
    options: dict[str, Any] = {
        "name": "edge-test",
        "model": initial_model(),
        "min_clients": 2,
        "model_manager_config": ModelManagerConfig(num_updates_for_model=20, max_model_version=5),
        "device_manager_config": DeviceManagerConfig(device_selection_size=40),
        "simulation_config": SimulationConfig(
            task_processor=DigitsDevice,
            num_devices=200,
            speed={"distribution": "uniform", "low": 0.0, "high": 0.02},
            seed=3,
        ),
        "evaluator_config": EvaluatorConfig(accuracy),
        "report_interval": 0.05,
    }
    options.update(kwargs)
    return EdgeFedBuffRecipe(**options)


def _run(recipe: EdgeFedBuffRecipe, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    return result, summary


def test_fedbuff_over_two_aggregator_sites_of_200_devices_raises_the_accuracy(
    tmp_path: Path,
) -> None:
    result, summary = _run(_recipe(), tmp_path)
    records = round_records(result)
    assert [r["round"] for r in records] == [1, 2, 3, 4, 5]
    scores = [r["metrics"]["accuracy"] for r in records]
    assert accuracy(initial_model())["accuracy"] < 0.2
    assert scores[-1] > 0.75
    assert scores[-1] > scores[0]
    assert summary["model_versions"] == 5
    assert summary["devices_known"] == 400
    assert summary["accepted_updates"] >= 5 * 20
    assert summary["device_tasks"]["answered"] >= summary["accepted_updates"]
    assert (result / "server" / "models" / "global_model.npz").is_file()


def test_devices_vanishing_mid_task_do_not_hang_the_job(tmp_path: Path) -> None:
    recipe = _recipe(
        model_manager_config=ModelManagerConfig(num_updates_for_model=20, max_model_version=3),
        device_manager_config=DeviceManagerConfig(
            device_selection_size=20, min_hole_to_fill=20, device_wait_timeout=0.3
        ),
        simulation_config=SimulationConfig(
            task_processor=DigitsDevice, num_devices=200, dropout=0.3, seed=5
        ),
    )
    _, summary = _run(recipe, tmp_path)
    assert summary["model_versions"] == 3
    assert summary["device_tasks"]["dropped_out"] > 0
    # each vanished device's slot was freed after device_wait_timeout (those still waiting
    # when the last version was made were not)
    assert 0 < summary["timed_out_devices"] <= summary["device_tasks"]["dropped_out"]


def test_stale_updates_are_down_weighted_and_counted_in_the_summary(tmp_path: Path) -> None:
    recipe = _recipe(
        model_manager_config=ModelManagerConfig(
            num_updates_for_model=10,
            max_model_version=4,
            staleness_weight=True,
            max_model_history=2,
        ),
        device_manager_config=DeviceManagerConfig(device_selection_size=40),
    )
    _, summary = _run(recipe, tmp_path)
    assert summary["model_versions"] == 4
    assert summary["stale_updates"] + summary["dropped_updates"] > 0


def test_the_recipe_is_registered_and_refuses_bad_knobs_by_name() -> None:
    entry = get_registry().get("recipe", "edge-fedbuff")
    assert entry.item.load() is EdgeFedBuffRecipe
    with pytest.raises(RecipeArgumentError, match="min_hole_to_fill=50 exceeds"):
        _recipe(
            device_manager_config=DeviceManagerConfig(device_selection_size=40, min_hole_to_fill=50)
        )
    with pytest.raises(RecipeArgumentError, match="not both"):
        _recipe(gateway_config=GatewayConfig())
    with pytest.raises(RecipeArgumentError, match="dropout"):
        _recipe(simulation_config=SimulationConfig(task_processor=DigitsDevice, dropout=1.0))
    with pytest.raises(RecipeArgumentError, match="report_interval"):
        _recipe(report_interval=0)


def test_a_job_whose_devices_never_suffice_fails_naming_the_progress_timeout(
    tmp_path: Path,
) -> None:
    recipe = _recipe(
        device_manager_config=DeviceManagerConfig(
            device_selection_size=40, initial_min_client_num=1000
        ),
    )
    recipe.set_config("edge.report_timeout", 0.3)
    recipe.set_config("edge.progress_timeout", 0.5)
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    message = run.get_message()
    assert "edge.progress_timeout" in message
    assert "400 devices known" in message
