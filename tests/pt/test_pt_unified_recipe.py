"""The unified base recipe with framework="pytorch": the same job as ember-pt's FedAvgRecipe."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from ember import SimEnv
from ember.cli.main import cli
from ember.recipes import FedAvgRecipe, RecipeArgumentError
from ember_pt import recipes as pt_recipes

SCRIPT = str(Path(__file__).parent / "scripts" / "pt_add_client.py")
MODEL = {"path": "pt_tiny.TinyNet", "args": {"width": 3}}


def _run(tmp_path: Path, cls: type, **kwargs: object) -> dict[str, np.ndarray]:
    recipe = cls(
        name="unified", min_clients=2, num_rounds=2, model=MODEL, train_script=SCRIPT, **kwargs
    )
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False)
    run = recipe.execute(env)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    return load_file(str(Path(run.get_result()) / "server" / "models" / "global_model.safetensors"))


def test_core_fedavg_with_framework_pytorch_runs_the_same_job_as_ember_pts(
    tmp_path: Path,
) -> None:
    unified = _run(tmp_path / "unified", FedAvgRecipe, framework="pytorch")
    framework_package = _run(tmp_path / "pt", pt_recipes.FedAvgRecipe)
    assert set(unified) == set(framework_package)
    for key, value in unified.items():
        np.testing.assert_array_equal(value, framework_package[key])  # bit-identical


def test_the_pytorch_framework_gives_scripts_tensors_and_tasks_the_model_class(
    tmp_path: Path,
) -> None:
    recipe = FedAvgRecipe(framework="pytorch", min_clients=2, model=MODEL, train_script=SCRIPT)
    job = json.loads((recipe.export(tmp_path / "job") / "job.json").read_text())
    assert job["client"]["params_format"] == "pytorch"
    assert job["meta"]["framework"] == "pytorch"
    args = job["workflows"][0]["args"]
    assert args["task_meta"] == {"model_class": MODEL}
    assert args["persistor"]["target"] == "ember_pt.persistor:TorchPersistor"


def test_ember_pts_recipe_refuses_another_framework_naming_the_unified_recipe() -> None:
    with pytest.raises(RecipeArgumentError, match=r"FedAvgRecipe\(framework='numpy'\)"):
        pt_recipes.FedAvgRecipe(framework="numpy", min_clients=2, model=MODEL, train_script=SCRIPT)


def test_recipes_built_on_fedavg_list_their_own_then_fedavgs_parameters() -> None:
    names = list(inspect.signature(pt_recipes.FedOptRecipe).parameters)
    assert names[:3] == ["name", "optimizer_args", "lr_scheduler_args"]
    assert {"min_clients", "train_script", "exclude_vars", "framework"} <= set(names)
    assert inspect.signature(pt_recipes.FedOptRecipe).parameters["framework"].default == ("pytorch")
    assert inspect.signature(pt_recipes.FedOptRecipe).parameters["name"].default == "fedopt"


def test_recipe_show_lists_the_inherited_parameters() -> None:
    result = CliRunner().invoke(cli, ["recipe", "show", "pytorch-fedprox", "--format", "json"])
    assert result.exit_code == 0, result.output
    params = {p["name"]: p for p in json.loads(result.output)["parameters"]}
    assert params["fedprox_mu"]["default"] == 0.01
    assert params["min_clients"]["required"] is True
    assert params["train_script"]["required"] is True
    assert params["name"]["default"] == "fedprox"
    assert params["framework"]["default"] == "pytorch"
