"""The unified FedAvgRecipe: frameworks through the registry, inherited parameters, refusals."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from ember.controllers import BestModelTracker
from ember.plugins import UnknownNameError
from ember.recipes import FedAvgRecipe, NumpyFedAvgRecipe, Recipe, RecipeArgumentError


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "client.py"
    path.write_text("import ember.client as flare\nflare.init()\n")
    return str(path)


def test_an_uninstalled_framework_names_the_package_to_install(script: str) -> None:
    with pytest.raises(UnknownNameError, match="ember-xgboost"):
        FedAvgRecipe(framework="xgboost", min_clients=1, model=[1.0], train_script=script)


def test_the_default_framework_is_numpy_and_matches_the_numpy_recipe(
    script: str, tmp_path: Path
) -> None:
    unified = FedAvgRecipe(min_clients=1, model=[1.0, 2.0], train_script=script)
    numpy_recipe = NumpyFedAvgRecipe(min_clients=1, model=[1.0, 2.0], train_script=script)
    assert unified.job.meta["framework"] == numpy_recipe.job.meta["framework"] == "numpy"
    assert unified.job.workflows == numpy_recipe.job.workflows
    assert unified.job.client == numpy_recipe.job.client


def test_a_subclass_lists_its_parameters_then_its_bases_less_what_it_replaces(
    script: str,
) -> None:
    class Scaled(FedAvgRecipe):
        replaces = ("key_metric",)

        def __init__(self, *, name: str = "scaled", factor: float = 2.0, **kwargs: Any) -> None:
            self.factor = factor
            super().__init__(name=name, key_metric=None, **kwargs)

    params = inspect.signature(Scaled).parameters
    assert list(params)[:2] == ["name", "factor"]
    assert "key_metric" not in params
    assert "min_clients" in params
    assert "framework" in params
    assert Scaled(min_clients=1, model=[1.0], train_script=script).job.name == "scaled"
    with pytest.raises(RecipeArgumentError, match="Scaled sets key_metric itself"):
        Scaled(min_clients=1, model=[1.0], train_script=script, key_metric="acc")


def test_a_recipe_assembles_its_job_in_one_place(script: str) -> None:
    from ember.recipes import client_app

    class OneWorkflow(Recipe):
        framework = "numpy"

        def __init__(self, *, train_script: str) -> None:
            app, files = client_app(train_script, "", False, None)
            self.assemble(
                name="one",
                min_clients=1,
                workflows=[{"target": "pkg.mod:Ctl", "args": {}}],
                client=app,
                files=files,
            )

    recipe = OneWorkflow(train_script=script)
    assert recipe.job.meta == {"recipe": "OneWorkflow", "framework": "numpy"}
    assert recipe.job.workflows == [{"target": "pkg.mod:Ctl", "args": {}}]
    assert list(inspect.signature(OneWorkflow).parameters) == ["train_script"]


def test_the_best_model_tracker_follows_the_mode_and_patience() -> None:
    tracker = BestModelTracker("loss", mode="min", patience=2)
    assert tracker.update(0, {"loss": 1.0}) is True
    assert tracker.update(1, {"accuracy": 0.3}) is False  # no key metric: nothing changes
    assert tracker.update(2, {"loss": 0.5}) is True
    assert tracker.update(3, {"loss": 0.7}) is False
    assert tracker.patience_exhausted() is None
    assert tracker.update(4, {"loss": 0.5}) is False  # equal is no improvement
    assert tracker.patience_exhausted() == "loss did not improve for 2 rounds (best 0.5 in round 2)"
    assert tracker.summary() == {"round": 2, "value": 0.5}
