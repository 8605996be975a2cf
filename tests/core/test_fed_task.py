"""FedTaskRecipe: a model-free task to all or a seeded sample of the sites; results as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember.controllers import FedTaskController
from ember.recipes import FedTaskRecipe, RecipeArgumentError
from support.sim import SCRIPTS, round_records, run_sim

SITE_SCRIPT = str(SCRIPTS / "fed_task_site.py")
SITES = ["site-1", "site-2", "site-3", "site-4", "site-5"]


def _recipe(**kwargs: Any) -> FedTaskRecipe:
    options: dict[str, Any] = {
        "name": "task-test",
        "task_name": "embed",
        "min_clients": 2,
        "task_script": SITE_SCRIPT,
        "task_data": {"scale": 2.5},
        "task_meta": {"split": "train"},
    }
    options.update(kwargs)
    return FedTaskRecipe(**options)


def _expected_sample(count: int, seed: int) -> list[str]:
    chosen = np.random.default_rng(seed).choice(len(SITES), size=count, replace=False)
    return [SITES[i] for i in sorted(chosen)]


def test_every_site_runs_the_task_and_what_each_sent_is_collected(tmp_path: Path) -> None:
    recipe = _recipe()
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    results = recipe.results(run)
    assert recipe.results_path(run) == Path(run.get_result()) / "server/fed_task/results.json"
    assert results["task_name"] == "embed"
    assert results["sampled"] == results["available"] == SITES[:3]
    assert results["failed"] == {}
    assert results["timed_out"] == []
    assert results["sites"]["site-2"] == {
        "params": {"embedding": [2.0, 2.0, 2.0]},
        "params_type": None,  # the script set none
        "metrics": {"rows": 20, "scale": 2.5},
        "meta": {"got_meta": {"split": "train", "task_name": "embed"}, "n": 2},
    }
    assert isinstance(results["seed"], int)  # drawn and recorded
    (record,) = round_records(run.get_result())
    assert record["sites"] == SITES[:3]
    assert record["site_metrics"]["site-3"] == {"rows": 30, "scale": 2.5}


@pytest.mark.parametrize(("kwargs", "count"), [({"num_clients": 2}, 2), ({"fraction": 0.5}, 3)])
def test_a_seeded_sample_of_the_sites_gets_the_task_the_same_every_run(
    tmp_path: Path, kwargs: dict[str, Any], count: int
) -> None:
    sampled = []
    for attempt in range(2):
        recipe = _recipe(name=f"sample-{attempt}", seed=7, **kwargs)
        run = run_sim(recipe, tmp_path, num_clients=5)
        assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
        results = recipe.results(run.get_result())
        assert results["seed"] == 7
        assert sorted(results["sites"]) == results["sampled"]  # only they ran it
        sampled.append(results["sampled"])
    assert sampled[0] == sampled[1] == _expected_sample(count, 7)
    assert len(sampled[0]) == count


def test_the_sample_follows_the_seed() -> None:
    controller = FedTaskController(task_name="t", num_clients=3)
    draws = {tuple(controller.sample(SITES, seed)) for seed in range(20)}
    assert len(draws) > 1
    assert all(list(d) == sorted(d, key=SITES.index) and len(set(d)) == 3 for d in draws)
    assert controller.sample(SITES, 11) == _expected_sample(3, 11)


def test_asking_for_more_sites_than_are_alive_fails_the_job_saying_so(tmp_path: Path) -> None:
    run = run_sim(_recipe(num_clients=4), tmp_path, num_clients=3)
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "num_clients=4 but only 3 sites are alive" in run.get_message()


def test_an_output_path_and_the_results_file_are_json(tmp_path: Path) -> None:
    recipe = _recipe(output_path="embeddings/index.json")
    run = run_sim(recipe, tmp_path, num_clients=2)
    path = Path(run.get_result()) / "server" / "embeddings" / "index.json"
    assert json.loads(path.read_text())["sampled"] == ["site-1", "site-2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_clients": 0}, "min_clients must be an integer >= 1"),
        ({"num_clients": 0}, "num_clients must be an integer >= 1"),
        ({"fraction": 0.0}, r"fraction must be a number in \(0, 1\]"),
        ({"fraction": 1.5}, r"fraction must be a number in \(0, 1\]"),
        ({"num_clients": 2, "fraction": 0.5}, "give num_clients .* or fraction .*, not both"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"num_clients": 2, "min_responses": 3}, "min_responses=3 exceeds num_clients=2"),
        ({"timeout": -1}, "timeout must be a number of seconds >= 0"),
        ({"task_name": ""}, "task_name must be a non-empty string"),
        ({"task_data": [1]}, "task_data must be a dict"),
        ({"task_meta": {"x": np.zeros(2)}}, "task_meta must hold only JSON values"),
        ({"output_path": "out.txt"}, "output_path must be a path ending in .json"),
        ({"output_path": "../x.json"}, "must stay inside the server's result folder"),
        ({"task_script": "missing.py"}, "task_script 'missing.py' does not exist"),
        ({"task_args": ["--x"]}, "task_args must be a string of arguments"),
    ],
)
def test_bad_parameters_are_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        _recipe(**kwargs)


def test_sites_in_their_own_processes_send_the_same_results(tmp_path: Path) -> None:
    recipe = _recipe(launch_external_process=True, num_clients=2, seed=3)
    run = run_sim(recipe, tmp_path, num_clients=4)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    results = recipe.results(run)
    assert results["sampled"] == [
        SITES[i] for i in sorted(np.random.default_rng(3).choice(4, size=2, replace=False))
    ]
    for site in results["sampled"]:
        index = int(site.rsplit("-", 1)[1])
        assert results["sites"][site]["params"] == {"embedding": [float(index)] * 3}
        assert results["sites"][site]["meta"]["n"] == index
