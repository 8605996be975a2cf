"""The plugin: its recipes are listed with framework sklearn, and loading it is cheap."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from ember.cli.main import cli

RECIPES = {
    "sklearn-fedavg": "ember_sklearn.recipes:SklearnFedAvgRecipe",
    "sklearn-kmeans": "ember_sklearn.recipes:KMeansFedAvgRecipe",
    "sklearn-svm": "ember_sklearn.recipes:SVMFedAvgRecipe",
}


def test_recipe_list_shows_the_three_recipes_with_framework_sklearn() -> None:
    result = CliRunner().invoke(cli, ["recipe", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    for name, target in RECIPES.items():
        assert rows[name]["framework"] == "sklearn"
        assert rows[name]["target"] == target
        assert rows[name]["plugin"] == "sklearn"
    assert {r["algorithm"] for n, r in rows.items() if n in RECIPES} == {"FedAvg", "KMeans", "SVM"}


def test_recipe_show_reads_the_constructor() -> None:
    result = CliRunner().invoke(cli, ["recipe", "show", "sklearn-svm", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    params = {p["name"]: p for p in data["parameters"]}
    assert params["kernel"]["default"] == "rbf"
    assert params["C"]["default"] == 1.0
    assert params["min_clients"]["required"]
    assert data["class"] == "ember_sklearn.recipes.svm.SVMFedAvgRecipe"


def test_plugin_and_recipe_classes_import_no_sklearn() -> None:
    code = (
        "import sys\n"
        "from ember.plugins import get_registry\n"
        "reg = get_registry()\n"
        "assert reg.items('recipe')['sklearn-svm'].plugin == 'sklearn'\n"
        "for name in ('sklearn-fedavg', 'sklearn-kmeans', 'sklearn-svm'):\n"
        "    reg.get('recipe', name).item.load()\n"
        "print('sklearn' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"
