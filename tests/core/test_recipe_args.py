"""Recipe and env arguments are checked when given, with errors naming argument and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember import SimEnv
from ember.recipes import RecipeArgumentError, add_cross_site_evaluation, add_experiment_tracking
from support.sim import SCRIPTS, numpy_recipe


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_clients": 0}, "min_clients must be an integer >= 1, got 0"),
        ({"num_rounds": "3"}, "num_rounds must be an integer >= 1, got '3'"),
        ({"name": "a b"}, "name must start with a letter or digit"),
        ({"train_script": "missing.py"}, "train_script 'missing.py' does not exist"),
        (
            {"params_transfer_type": "HALF"},
            "params_transfer_type must be one of ['FULL', 'DIFF'], got 'HALF'",
        ),
        ({"key_metric_mode": "best"}, "key_metric_mode must be one of ['max', 'min']"),
        ({"stop_cond": "accuracy is high"}, "stop_cond 'accuracy is high' is not of the form"),
        ({"patience": 0}, "patience must be an integer >= 1"),
        ({"patience": 2, "key_metric": None}, "patience needs key_metric"),
        ({"exclude_vars": "bn.(["}, "exclude_vars='bn.([' is not a valid regular expression"),
        ({"aggregation_weights": {"site-1": -1}}, "aggregation_weights must map site names"),
        ({"server_memory_gc_rounds": -1}, "server_memory_gc_rounds must be an integer >= 0"),
        ({"model": None}, "give the initial model: model=... or initial_ckpt=..."),
        ({"model": "weights"}, "model must be a numpy array, a nested list, a dict of arrays"),
        ({"model": [[1, 2], [3]]}, "model cannot become numpy arrays"),
        ({"model": {"path": "NoDot"}}, "model given by path must be"),
        ({"model": None, "initial_ckpt": "w.pt"}, "initial_ckpt must be a path ending in .npy"),
        ({"model": None, "initial_ckpt": "nope.npz"}, "initial_ckpt 'nope.npz' does not exist"),
        ({"train_args": ["--x"]}, "train_args must be a string of arguments"),
    ],
)
def test_bad_recipe_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeArgumentError) as err:
        numpy_recipe(**kwargs)
    assert message in str(err.value)


def test_initial_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "w.npy", np.ones(3))
    monkeypatch.chdir(tmp_path)
    bundled = numpy_recipe(model=None, initial_ckpt="w.npy")
    assert bundled.files["app/ckpt/w.npy"] == tmp_path / "w.npy"
    absolute = numpy_recipe(model=None, initial_ckpt="/models/at/run/time.npz")
    persistor = absolute.job.workflows[0]["args"]["persistor"]["args"]
    assert persistor == {"initial_ckpt": "/models/at/run/time.npz"}


def test_model_by_path_accepts_class_path_synonym() -> None:
    recipe = numpy_recipe(model={"class_path": "mymodel.build", "args": {"n": 3}})
    persistor = recipe.job.workflows[0]["args"]["persistor"]["args"]
    assert persistor == {"factory": {"path": "mymodel.build", "args": {"n": 3}}}


def test_model_factory_beside_the_script_is_built_on_the_server(tmp_path: Path) -> None:
    script_dir = tmp_path / "app"
    script_dir.mkdir()
    (script_dir / "client.py").write_text((SCRIPTS / "np_client.py").read_text())
    (script_dir / "mymodel.py").write_text(
        "import numpy as np\n\ndef build(n):\n    return np.full(n, 7.0, dtype=np.float32)\n"
    )
    recipe = numpy_recipe(
        model={"path": "mymodel.build", "args": {"n": 4}},
        num_rounds=1,
        train_script=str(script_dir / "client.py"),
    )
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False))
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    with np.load(Path(run.get_result()) / "server" / "models" / "global_model.npz") as data:
        np.testing.assert_array_equal(data["numpy_key"], np.full(4, 8.0, np.float32))


def test_helpers_validate() -> None:
    with pytest.raises(
        RecipeArgumentError,
        match=r"tracking_type must be one of \['tensorboard', 'mlflow', 'wandb'\]",
    ):
        add_experiment_tracking(numpy_recipe(), tracking_type="comet")
    recipe = add_cross_site_evaluation(numpy_recipe())
    with pytest.raises(RecipeArgumentError, match="already added"):
        add_cross_site_evaluation(recipe)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "SimEnv needs num_clients >= 1 or a list of clients"),
        ({"clients": ["a", "a"]}, "clients has duplicate names"),
        ({"clients": ["server"]}, "clients must be a non-empty list of site names"),
        ({"num_clients": 3, "clients": ["a", "b"]}, "num_clients=3 disagrees with 2 names"),
        ({"num_clients": 2, "num_threads": 0}, "num_threads must be an integer >= 1"),
        ({"num_clients": 2, "log_config": "LOUD"}, "log_config 'LOUD' is neither a level name"),
    ],
)
def test_bad_simenv_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((RecipeArgumentError, ValueError)) as err:
        SimEnv(**kwargs)
    assert message in str(err.value)


def test_too_few_clients_for_the_recipe(tmp_path: Path) -> None:
    with pytest.raises(RecipeArgumentError, match="needs min_clients=3 but SimEnv has 2"):
        numpy_recipe(min_clients=3).execute(SimEnv(num_clients=2, workspace_root=str(tmp_path)))


def test_named_clients(tmp_path: Path) -> None:
    recipe = numpy_recipe(num_rounds=1)
    run = recipe.execute(
        SimEnv(clients=["hospital-a", "hospital-b"], workspace_root=str(tmp_path), progress=False)
    )
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    assert (Path(run.get_result()) / "hospital-a" / "log.txt").is_file()
