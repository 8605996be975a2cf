"""Three tiers: the server, relay sites, and leaf sites that hold the devices (SimEnv)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_digits import BrokenOnSite, DigitsDevice, accuracy, initial_model

from ember import SimEnv
from ember.recipes import RecipeArgumentError
from ember_edge.recipes import (
    DeviceManagerConfig,
    EdgeFedBuffRecipe,
    EvaluatorConfig,
    ModelManagerConfig,
    SimulationConfig,
)
from support.sim import round_records

COMPLETED = "FINISHED:COMPLETED"
LEAVES = ["site-3", "site-4", "site-5", "site-6"]
RELAYS = {"relay-1": ["site-3", "site-4"], "relay-2": ["site-5", "site-6"]}
DEVICES = 15  # per leaf


def _recipe(name: str, **kwargs: Any) -> EdgeFedBuffRecipe:
    every = DEVICES * len(LEAVES)
    options: dict[str, Any] = {
        "name": name,
        "model": initial_model(),
        "min_clients": 2,
        # sync mode over every device: each version is the weighted mean of all of them
        "model_manager_config": ModelManagerConfig(
            num_updates_for_model=every, max_model_version=3
        ),
        "device_manager_config": DeviceManagerConfig(
            device_selection_size=every, min_hole_to_fill=every
        ),
        "simulation_config": SimulationConfig(task_processor=DigitsDevice, num_devices=DEVICES),
        "evaluator_config": EvaluatorConfig(accuracy),
        "report_interval": 0.05,
    }
    options.update(kwargs)
    return EdgeFedBuffRecipe(**options)


def _run(recipe: EdgeFedBuffRecipe, sites: list[str], tmp_path: Path) -> Path:
    env = SimEnv(clients=sites, workspace_root=str(tmp_path / recipe.job.name), progress=False)
    run = recipe.execute(env)
    assert run.get_status() == COMPLETED, run.get_message()
    return Path(run.get_result())


def _model(result: Path) -> dict[str, np.ndarray]:
    with np.load(result / "server" / "models" / "global_model.npz") as data:
        return {k: data[k] for k in data.files}


def test_three_tiers_give_the_two_tier_model_of_the_same_devices(tmp_path: Path) -> None:
    two = _run(_recipe("two-tiers"), LEAVES, tmp_path)
    three = _run(_recipe("three-tiers", relays=RELAYS), [*RELAYS, *LEAVES], tmp_path)
    flat, tiered = _model(two), _model(three)
    assert flat.keys() == tiered.keys()
    for key in flat:  # the same sums, added in another order
        np.testing.assert_allclose(tiered[key], flat[key], rtol=1e-12, atol=1e-12)
    records = round_records(three)
    assert [r["round"] for r in records] == [1, 2, 3]
    assert records[-1]["metrics"]["accuracy"] > records[0]["metrics"]["accuracy"] - 0.05
    # the server talked to the relays only; the relays' reports carried every leaf's devices
    assert all(sorted(r["sites"]) == sorted(RELAYS) for r in records), records
    summary = json.loads((three / "server" / "metrics_summary.json").read_text())
    assert summary["devices_known"] == DEVICES * len(LEAVES)
    assert summary["accepted_updates"] == 3 * DEVICES * len(LEAVES)


def test_a_leaf_whose_devices_break_is_reported_and_the_job_goes_on_without_them(
    tmp_path: Path,
) -> None:
    recipe = _recipe(
        "broken-leaf",
        relays=RELAYS,
        model_manager_config=ModelManagerConfig(num_updates_for_model=20, max_model_version=3),
        device_manager_config=DeviceManagerConfig(device_selection_size=20, min_hole_to_fill=1),
        simulation_config=SimulationConfig(
            task_processor=BrokenOnSite,
            task_processor_args={"site": "site-6"},
            num_devices=DEVICES,
        ),
    )
    result = _run(recipe, [*RELAYS, *LEAVES], tmp_path)
    log = (result / "server" / "log.txt").read_text()
    assert "relay relay-2 could not reach its leaf site-6" in log
    assert "device site-6/dev-" in log
    assert "is broken" in log
    assert [r["round"] for r in round_records(result)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("relays", "match"),
    [
        ({"r": ["a"], "q": ["a"]}, "a is a leaf of both r and q"),
        ({"r": ["q"], "q": ["a"]}, "both relays and leaves"),
        ({"r": []}, "non-empty list"),
        ({}, "relays must be a dict"),
    ],
)
def test_bad_relays_are_refused_naming_the_problem(relays: Any, match: str) -> None:
    with pytest.raises(RecipeArgumentError, match=match):
        _recipe("bad", relays=relays, min_clients=1)


def test_more_min_clients_than_relays_is_refused() -> None:
    with pytest.raises(RecipeArgumentError, match="min_clients counts relay sites"):
        _recipe("bad", relays={"relay-1": ["site-3"]}, min_clients=2)


def test_relays_naming_sites_the_job_lacks_fail_the_job_naming_them(tmp_path: Path) -> None:
    recipe = _recipe("unknown", relays={"relay-1": ["site-3", "site-9"]}, min_clients=1)
    env = SimEnv(clients=["relay-1", "site-3"], workspace_root=str(tmp_path), progress=False)
    run = recipe.execute(env)
    assert run.get_status() != COMPLETED
    assert "relays names sites this job does not have: ['site-9']" in run.get_message()
