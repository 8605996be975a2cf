"""A real third-party recipe plugin: examples/recipe-plugin (ember-recipe-median), built and
installed from a temporary folder, listed by the CLI and run end to end in SimEnv and PocEnv.

Every job here has three sites that "train" by moving every weight from 0: site-1 by 1, site-2
by 2, site-3 (the outlier) by 100. By hand: the median moves the global model by 2 a round
(0 -> 2 -> 4), where FedAvg's mean would move it by 103/3 (0 -> 34.33 -> 68.67).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember import PocEnv, SimEnv
from ember.envs.poc import start_workspace, stop_workspace
from ember.plugins import get_registry, reset_plugin_manager
from ember.recipes import NumpyFedAvgRecipe, RecipeArgumentError
from ember.system.poc import prepare
from support.plugin_build import EXAMPLE_PLUGIN, PLUGIN_ENV_VARS, run_ember
from support.sim import global_model, round_records

COMPLETED = "FINISHED:COMPLETED"
CLIENT = EXAMPLE_PLUGIN / "client.py"
#: what a plugin may import of Ember (docs/plugins.md)
FACADES = {
    "ember",
    "ember.client",
    "ember.common",
    "ember.config",
    "ember.controllers",
    "ember.errors",
    "ember.fobs",
    "ember.plugins",
    "ember.recipes",
    "ember.streaming",
}


@pytest.fixture
def median_recipe(median_plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The installed plugin's recipe class, found through its entry point in this process."""
    for var in PLUGIN_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.syspath_prepend(str(median_plugin_path))
    reset_plugin_manager()
    try:
        recipe = get_registry().get("recipe", "numpy-median").item.load()
        assert recipe.__module__ == "ember_recipe_median.recipe"
        assert Path(sys.modules[recipe.__module__].__file__ or "").is_relative_to(
            median_plugin_path
        )  # the installed copy, not the example's source
        yield recipe
    finally:
        reset_plugin_manager()
        for name in [m for m in sys.modules if m.split(".")[0] == "ember_recipe_median"]:
            del sys.modules[name]


def job(recipe_class: Any, **kwargs: Any) -> Any:
    """The three-site job of this module (outlier site-3), 2 rounds from zeros."""
    options: dict[str, Any] = {
        "name": "median-test",
        "min_clients": 3,
        "num_rounds": 2,
        "model": np.zeros((2, 3), dtype=np.float32),
        "train_script": str(CLIENT),
        "train_args": "--outlier site-3 --outlier-shift 100",
        "key_metric": None,
    }
    options.update(kwargs)
    return recipe_class(**options)


def sim(recipe: Any, tmp_path: Path, num_clients: int = 3) -> Path:
    run = recipe.execute(
        SimEnv(num_clients=num_clients, workspace_root=str(tmp_path / "ws"), progress=False)
    )
    assert run.get_status() == COMPLETED, run.get_message()
    return Path(run.get_result())


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (``from x import y``: ``x``)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_plugin_imports_only_the_public_facades() -> None:
    sources = sorted(EXAMPLE_PLUGIN.rglob("*.py"))
    assert {p.name for p in sources} >= {"plugin.py", "recipe.py", "controller.py", "job.py"}
    for path in sources:
        ember = {m for m in imported_modules(path) if m.split(".")[0] == "ember"}
        assert ember <= FACADES, f"{path} imports {sorted(ember - FACADES)}"
    hook = imported_modules(EXAMPLE_PLUGIN / "src" / "ember_recipe_median" / "plugin.py")
    assert hook == {"__future__", "ember.plugins"}  # the hook module imports nothing heavy


def test_ember_recipe_list_and_show_name_its_own_and_fedavgs_parameters(
    median_plugin_path: Path,
) -> None:
    listed = run_ember("recipe", "list", "--format", "json", pythonpath=[median_plugin_path])
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["numpy-median"]["plugin"] == "median"
    assert rows["numpy-median"]["target"] == "ember_recipe_median.recipe:MedianRecipe"
    assert (rows["numpy-median"]["framework"], rows["numpy-median"]["algorithm"]) == (
        "numpy",
        "Median",
    )

    shown = run_ember(
        "recipe", "show", "numpy-median", "--format", "json", pythonpath=[median_plugin_path]
    )
    assert shown.returncode == 0, shown.stderr
    params = {p["name"]: p for p in json.loads(shown.stdout)["parameters"]}
    # its own parameters first, then FedAvgRecipe's, less the two it sets itself
    assert list(params)[:3] == ["name", "aggregation", "trim"]
    assert params["name"]["default"] == "median"
    assert params["aggregation"]["default"] == "median"
    assert params["min_clients"]["required"] is True
    assert params["train_script"]["required"] is True
    assert params["num_rounds"]["default"] == 2
    assert {"params_transfer_type", "exclude_vars", "framework"} <= set(params)
    assert not {"aggregation_weights", "server_expected_format"} & set(params)


@pytest.mark.parametrize(
    ("options", "num_clients", "expected"),
    [
        # 0 -> median(1, 2, 100) = 2 -> median(3, 4, 102) = 4
        ({}, 3, [2.0, 4.0]),
        # the same medians of updates (+1, +2, +100), added to the global model
        ({"params_transfer_type": "DIFF"}, 3, [2.0, 4.0]),
        # five sites move by 1, 2, 100, 4, 5: drop 1 and 100, average 2, 4, 5 (11/3 a round)
        ({"aggregation": "trimmed_mean", "trim": 1}, 5, [11 / 3, 22 / 3]),
    ],
    ids=["median", "median-of-diffs", "trimmed-mean"],
)
def test_an_outlier_site_does_not_drag_the_global_model_in_simenv(
    median_recipe: Any,
    tmp_path: Path,
    options: dict[str, Any],
    num_clients: int,
    expected: list[float],
) -> None:
    result = sim(job(median_recipe, min_clients=num_clients, **options), tmp_path, num_clients)
    workflow = json.loads((result / "job" / "job.json").read_text())["workflows"][0]
    assert workflow["target"] == "ember_recipe_median.controller:MedianController"
    model = global_model(result)
    assert model.dtype == np.float32
    assert model.shape == (2, 3)
    np.testing.assert_allclose(model, np.full((2, 3), expected[-1]), rtol=1e-6)
    records = round_records(result)
    assert [r["sites"] for r in records] == [[f"site-{i + 1}" for i in range(num_clients)]] * 2
    # round metrics: the median of what the sites report (each its new weights' mean)
    medians = [
        float(np.median([m["weight_mean"] for m in r["site_metrics"].values()])) for r in records
    ]
    assert [r["metrics"]["weight_mean"] for r in records] == medians
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["rounds_completed"] == 2
    assert summary["aggregation"] == options.get("aggregation", "median")


def test_the_median_is_exact_where_fedavgs_mean_follows_the_outlier(
    median_recipe: Any, tmp_path: Path
) -> None:
    median = global_model(sim(job(median_recipe), tmp_path / "median"))
    assert median.tobytes() == np.full((2, 3), 4.0, dtype=np.float32).tobytes()
    mean = global_model(sim(job(NumpyFedAvgRecipe, name="fedavg-test"), tmp_path / "mean"))
    np.testing.assert_allclose(mean, np.full((2, 3), 2 * 103 / 3), rtol=1e-6)


def test_the_example_job_runs_as_its_readme_says(median_plugin_path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV_VARS}
    env["PYTHONPATH"] = str(median_plugin_path)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE_PLUGIN / "job.py"), "--workspace-root", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status: FINISHED:COMPLETED" in done.stdout
    assert "global model after 2 rounds (median):\n[[4. 4. 4.]\n [4. 4. 4.]]" in done.stdout
    assert "FedAvg's mean would have put every weight at 68.67" in done.stdout
    model = global_model(tmp_path / "median-example")
    assert model.tobytes() == np.full((2, 3), 4.0, dtype=np.float32).tobytes()


def test_the_median_recipe_runs_on_a_poc_system(
    median_recipe: Any,
    median_plugin_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the server's job process imports the plugin's controller: the daemons, and the job
    # processes they start, inherit this environment
    path = [str(median_plugin_path), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    ws = prepare(tmp_path / "poc", num_clients=3)
    start_workspace(ws)
    try:
        run = PocEnv(clients=["site-1", "site-2", "site-3"], workspace=ws.root).deploy(
            job(median_recipe, name="median-poc")
        )
        result = Path(run.get_result(timeout=240))
        assert run.get_status() == COMPLETED, run.get_message()
    finally:
        stop_workspace(ws)
    assert global_model(result).tobytes() == np.full((2, 3), 4.0, dtype=np.float32).tobytes()
    records = round_records(result)
    assert [r["metrics"]["weight_mean"] for r in records] == [2.0, 4.0]
    assert [r["sites"] for r in records] == [["site-1", "site-2", "site-3"]] * 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aggregation": "trimmed_mean", "trim": -1}, "trim must be an integer >= 1, got -1"),
        ({"trim": 2}, "trim=2 applies to aggregation='trimmed_mean' only"),
        ({"aggregation": "mean"}, "aggregation must be one of ['median', 'trimmed_mean']"),
        (
            {"aggregation": "trimmed_mean", "trim": 1, "min_clients": 2},
            "trim=1 drops 2 of the sites' values at every coordinate, so "
            "aggregation='trimmed_mean' needs min_clients > 2 (got min_clients=2)",
        ),
        ({"aggregation_weights": {"site-1": 2.0}}, "MedianRecipe sets aggregation_weights"),
        ({"num_rounds": 0}, "num_rounds must be an integer >= 1, got 0"),  # FedAvg's own check
    ],
    ids=[
        "negative-trim",
        "trim-with-median",
        "unknown-aggregation",
        "trim-too-large",
        "weights",
        "inherited-check",
    ],
)
def test_a_bad_argument_is_refused_by_name(
    median_recipe: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(RecipeArgumentError) as err:
        job(median_recipe, **options)
    assert message in str(err.value)
