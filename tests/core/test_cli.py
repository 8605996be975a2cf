"""The ``ember`` CLI: plugins, recipe list/show, config, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ember.cli.main import cli
from support.plugin_build import run_ember


@pytest.mark.usefixtures("fresh_plugins")
def test_recipe_list_shows_core_recipes() -> None:
    result = CliRunner().invoke(cli, ["recipe", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["numpy-fedavg"]["framework"] == "numpy"
    assert rows["numpy-fedavg"]["plugin"] == "core"
    assert rows["numpy-fedavg"]["target"] == "ember.recipes.fedavg:NumpyFedAvgRecipe"


@pytest.mark.usefixtures("fresh_plugins")
def test_recipe_show_reads_defaults_from_the_constructor() -> None:
    result = CliRunner().invoke(cli, ["recipe", "show", "numpy-fedavg", "--format", "json"])
    assert result.exit_code == 0, result.output
    params = {p["name"]: p for p in json.loads(result.output)["parameters"]}
    assert params["min_clients"]["required"] is True
    assert params["num_rounds"]["default"] == 2
    assert params["params_transfer_type"]["default"] == "FULL"


def test_recipe_list_and_show_a_plugin_recipe(median_plugin_path: Path) -> None:
    listed = run_ember("recipe", "list", pythonpath=[median_plugin_path])
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "FRAMEWORK", "ALGORITHM", "DESCRIPTION"]
    # other installed framework packages may add rows of their own
    listed_rows = [r.split()[:3] for r in rows]
    assert ["numpy-median", "numpy", "Median"] in listed_rows
    assert ["numpy-fedavg", "numpy", "FedAvg"] in listed_rows
    assert [r[0] for r in listed_rows] == sorted(r[0] for r in listed_rows)

    shown = run_ember(
        "recipe", "show", "numpy-median", "--format", "json", pythonpath=[median_plugin_path]
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["class"] == "ember_recipe_median.recipe.MedianRecipe"
    assert (data["framework"], data["algorithm"]) == ("numpy", "Median")
    assert data["doc"].startswith("FedAvg with a robust server: each round the global model")
    params = {p["name"]: p for p in data["parameters"]}
    assert list(params)[:3] == ["name", "aggregation", "trim"]  # then FedAvgRecipe's
    assert params["trim"] == {
        "name": "trim",
        "type": "int | None",
        "required": False,
        "default": None,
    }
    assert params["num_rounds"] == {
        "name": "num_rounds",
        "type": "int",
        "required": False,
        "default": 2,
    }
    assert params["train_script"]["required"] is True

    text = run_ember("recipe", "show", "numpy-median", pythonpath=[median_plugin_path])
    rows = {line.split()[0]: line.split() for line in text.stdout.splitlines()[4:]}
    assert rows["NAME"] == ["NAME", "TYPE", "DEFAULT"]
    assert rows["num_rounds"] == ["num_rounds", "int", "2"]
    assert rows["trim"] == ["trim", "int", "|", "None", "None"]


def test_recipe_show_unknown_name_fails_with_hint(median_plugin_path: Path) -> None:
    # ember-edge is installed in this checkout: disabled, it is as if it were not
    result = run_ember(
        "recipe",
        "show",
        "edge-fedbuff",
        pythonpath=[median_plugin_path],
        env={"EMBER_DISABLED_PLUGINS": "edge"},
    )
    assert result.returncode == 1
    assert "no recipe named 'edge-fedbuff'" in result.stderr
    installed = result.stderr.split("Installed recipes: ")[1].split(".")[0].split(", ")
    assert {"numpy-fedavg", "numpy-fedtask", "numpy-median"} <= set(installed)
    assert "pip install ember-edge" in result.stderr


def test_plugins_text_output_lists_registrations(median_plugin_path: Path) -> None:
    result = run_ember("plugins", pythonpath=[median_plugin_path])
    assert result.returncode == 0, result.stderr
    assert "median  (ember-recipe-median 0.1.0; ember_recipe_median.plugin)" in result.stdout
    assert "    recipes: numpy-median" in result.stdout
    assert "    FOBS decomposers: " in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run_ember("frobnicate")
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr


def test_python_dash_m_ember_is_the_same_cli() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ember", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("ember, version ")
