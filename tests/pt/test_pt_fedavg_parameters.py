"""ember-pt under NVFlare's names: PTFedAvgEarlyStopping, FedEval's eval_ckpt, and FedAvg's
NVFlare-named parameters reaching the PyTorch recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pt_tiny import TinyNet
from safetensors.numpy import load_file

from ember import SimEnv
from ember.controllers import FedAvgController
from ember.recipes.validation import RecipeArgumentError
from ember_pt.recipes import FedAvgRecipe, FedEvalRecipe

SCRIPTS = Path(__file__).parent / "scripts"


def test_pt_fedavg_early_stopping_is_the_fedavg_controller_with_stop_cond_and_patience() -> None:
    from ember_pt.controllers import PTFedAvgEarlyStopping

    assert PTFedAvgEarlyStopping is FedAvgController
    controller = PTFedAvgEarlyStopping(
        num_rounds=3,
        min_clients=1,
        persistor={"target": "ember.controllers:NumpyPersistor", "args": {}},
        stop_cond="accuracy >= 0.9",
        patience=2,
        key_metric="accuracy",
    )
    assert (str(controller.stop_cond), controller.patience) == ("accuracy >= 0.9", 2)


def test_eval_ckpt_is_accepted_as_nvflares_name_for_initial_ckpt(tmp_path: Path) -> None:
    path = tmp_path / "trained.pt"
    torch.save(TinyNet(3).state_dict(), path)
    script = str(SCRIPTS / "pt_fedeval_score.py")
    model = {"path": "pt_tiny.TinyNet", "args": {"width": 3}}
    by_nvflare_name = FedEvalRecipe(
        min_clients=1, model=model, eval_ckpt=str(path), eval_script=script
    )
    by_ember_name = FedEvalRecipe(
        min_clients=1, model=model, initial_ckpt=str(path), eval_script=script
    )
    assert by_nvflare_name.job.workflows == by_ember_name.job.workflows


def test_eval_ckpt_and_a_different_initial_ckpt_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeArgumentError, match="eval_ckpt is NVFlare's name for initial_ckpt"):
        FedEvalRecipe(
            min_clients=1,
            model=TinyNet(3),
            eval_ckpt="a.pt",
            initial_ckpt="b.pt",
            eval_script=str(SCRIPTS / "pt_fedeval_score.py"),
        )


def test_the_pytorch_recipe_names_its_model_files_after_save_filename(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="use model="):
        recipe = FedAvgRecipe(
            name="pt-job",
            min_clients=2,
            num_rounds=1,
            initial_model={"path": "pt_tiny.TinyNet", "args": {"width": 3}},
            train_script=str(SCRIPTS / "pt_add_client.py"),
            save_filename="FL_global_model.pt",
            best_model_filename="best_FL_global_model",
        )
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    run = recipe.execute(env)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    models = Path(run.get_result()) / "server" / "models"
    # the persistor's extension is added to a name without it
    assert (models / "FL_global_model.pt.safetensors").is_file()
    assert load_file(str(models / "FL_global_model.pt.safetensors"))
