"""FedAvg's NVFlare-named parameters: each changes the job as documented in
docs/fedavg-parameters.md, and a wrong value is refused naming the parameter."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember.job.definition import ClientApp, JobDefinition
from ember.recipes import FedAvgRecipe
from ember.recipes.validation import RecipeArgumentError
from ember.runtime.controllers.fedavg import FedAvgController
from support.sim import INITIAL, SCRIPTS, global_model, numpy_recipe, round_records, run_sim

COMPLETED = "FINISHED:COMPLETED"


def controller_args(recipe: Any) -> dict[str, Any]:
    return dict(recipe.job.workflows[0]["args"])


def test_initial_model_is_accepted_with_a_deprecation_warning_naming_model() -> None:
    with pytest.warns(DeprecationWarning, match="use model="):
        recipe = numpy_recipe(model=None, initial_model=INITIAL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = numpy_recipe()
    assert recipe.job.workflows == expected.job.workflows


def test_initial_model_together_with_model_is_refused() -> None:
    with pytest.raises(RecipeArgumentError, match="give model= only"):
        numpy_recipe(initial_model=INITIAL)


def test_save_and_best_model_filenames_name_the_server_model_files(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        save_filename="FL_global_model",
        best_model_filename="best_FL_global_model.npz",
        train_args='--metrics "[0.5, 0.7, 0.6]"',
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    models = Path(run.get_result()) / "server" / "models"
    assert sorted(p.name for p in models.iterdir()) == [
        "FL_global_model.npz",
        "best_FL_global_model.npz",
    ]
    np.testing.assert_array_equal(global_model(run.get_result(), "FL_global_model"), INITIAL + 3)
    np.testing.assert_array_equal(
        global_model(run.get_result(), "best_FL_global_model"), INITIAL + 1
    )


def test_default_model_filenames_leave_the_job_unchanged() -> None:
    args = controller_args(numpy_recipe())
    assert "save_filename" not in args
    assert "best_model_filename" not in args


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"save_filename": "models/global"}, "save_filename must be a file name"),
        ({"best_model_filename": ""}, "best_model_filename"),
        ({"save_filename": 3}, "save_filename"),
        ({"save_filename": "m", "best_model_filename": "m"}, "must differ"),
        ({"best_model_filename": "global_model"}, "must differ"),
    ],
)
def test_a_wrong_model_filename_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        numpy_recipe(**kwargs)


def test_cuda_empty_cache_reaches_the_server_and_the_sites() -> None:
    recipe = numpy_recipe(cuda_empty_cache=False)
    assert controller_args(recipe)["cuda_empty_cache"] is False
    assert recipe.job.client.cuda_empty_cache is False
    assert "cuda_empty_cache" not in controller_args(numpy_recipe())
    assert numpy_recipe().job.client.cuda_empty_cache is True


def test_cuda_empty_cache_decides_whether_the_servers_memory_release_empties_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(
        "ember.runtime.controllers.fedavg.release_memory",
        lambda cuda=False: calls.append(cuda) or {},
    )
    recipe = numpy_recipe(num_rounds=2, server_memory_gc_rounds=1, cuda_empty_cache=False)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    assert calls == [False, False]


@pytest.mark.parametrize("name", ["cuda_empty_cache", "enable_tensor_disk_offload"])
def test_a_flag_that_is_not_a_bool_is_refused(name: str) -> None:
    with pytest.raises(RecipeArgumentError, match=f"{name} must be True or False"):
        numpy_recipe(**{name: "yes"})


def test_enable_tensor_disk_offload_keeps_the_global_model_under_the_job_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders: list[Path] = []
    original = FedAvgController._task_params

    def spy(self: FedAvgController, ctx: Any, params: Any, rnd: int) -> Any:
        sent, folder = original(self, ctx, params, rnd)
        folders.append(folder)
        assert folder is not None
        assert any(folder.iterdir())
        return sent, folder

    monkeypatch.setattr(FedAvgController, "_task_params", spy)
    recipe = numpy_recipe(num_rounds=2, enable_tensor_disk_offload=True)
    recipe.set_config("streaming.min_tensor_bytes", 1)  # the test model's 24 bytes too
    assert recipe.job.config["streaming.offload_dir"] == "offload"  # under server/
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    server = Path(run.get_result()) / "server"
    assert folders == [server / "offload" / "global-0", server / "offload" / "global-1"]
    assert not any(f.exists() for f in folders)  # removed once every site had its copy
    assert not (server / "offload").exists()  # results waited there too, until aggregation
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 2)


def test_per_site_config_gives_a_site_its_own_train_args(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        num_rounds=2, per_site_config={"site-2": {"train_args": "--add '{\"site-2\": 3}'"}}
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    # site-1 adds 1 (the shared train_args), site-2 adds 3: each round adds 2
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 4)


def test_per_site_config_travels_in_job_json(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        per_site_config={"site-1": {"train_args": "--x", "client_memory_gc_rounds": 2}}
    )
    job_dir = recipe.export(tmp_path / "job")
    data = json.loads((job_dir / "job.json").read_text())
    assert data["client"]["per_site"] == {
        "site-1": {"train_args": "--x", "client_memory_gc_rounds": 2}
    }
    job = JobDefinition.from_dir(job_dir)
    site1, site2 = job.client.for_site("site-1"), job.client.for_site("site-2")
    assert (site1.args, site1.client_memory_gc_rounds) == ("--x", 2)
    assert (site2.args, site2.client_memory_gc_rounds) == ("", 0)


def test_a_job_json_without_per_site_settings_still_loads() -> None:
    app = ClientApp(script="app/x.py")
    assert app.per_site == {}
    assert app.for_site("site-1") is app


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("site-1", "per_site_config must be a dict"),
        ({"site-1": "--lr 1"}, r"per_site_config\['site-1'\] must be a dict"),
        ({"site-1": {"lr": 1}}, "unknown keys lr; a site may set train_args"),
        ({"site-1": {"train_args": ["--lr", "1"]}}, "must be a string of arguments"),
        ({"site-1": {"client_memory_gc_rounds": -1}}, "client_memory_gc_rounds"),
        ({"": {}}, "keys are site names"),
    ],
)
def test_a_wrong_per_site_config_is_refused(value: Any, message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        numpy_recipe(per_site_config=value)


def test_the_parameters_are_in_the_unified_recipes_signature() -> None:
    import inspect

    params = inspect.signature(FedAvgRecipe).parameters
    for name in (
        "save_filename",
        "best_model_filename",
        "cuda_empty_cache",
        "enable_tensor_disk_offload",
        "per_site_config",
        "initial_model",
    ):
        assert name in params
    assert SCRIPTS.is_dir()


def test_launch_and_shutdown_timeouts_set_the_jobs_settings() -> None:
    recipe = numpy_recipe(launch_external_process=True, launch_timeout=5, shutdown_timeout=2.5)
    assert recipe.job.config == {
        "runtime.subprocess_connect_timeout": 5.0,
        "runtime.site_stop_timeout": 2.5,
    }
    assert numpy_recipe().job.config == {}


def test_a_script_that_does_not_connect_within_launch_timeout_fails_its_site(
    tmp_path: Path,
) -> None:
    script = tmp_path / "app" / "slow.py"
    script.parent.mkdir()
    script.write_text("import time\n\ntime.sleep(60)\n")
    recipe = numpy_recipe(
        train_script=str(script),
        launch_external_process=True,
        launch_timeout=0.5,
        shutdown_timeout=1,
    )
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "runtime.subprocess_connect_timeout = 0.5 s (job config)" in run.get_message()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"launch_once": False}, "launch_once=False .* is not supported"),
        ({"launch_once": "no"}, "launch_once must be True or False"),
        ({"launch_timeout": 5}, "needs launch_external_process=True"),
        (
            {"launch_external_process": True, "launch_timeout": 0},
            "launch_timeout must be a number of seconds >= 0.001",
        ),
        ({"shutdown_timeout": -1}, "shutdown_timeout must be a number of seconds >= 0"),
        ({"shutdown_timeout": "10"}, "shutdown_timeout"),
    ],
)
def test_a_wrong_launch_parameter_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        numpy_recipe(**kwargs)


PICK_SITE = "support.fedavg_components:PickSite"
ADD = """--add '{"site-1": 1, "site-2": 5}' --metrics "[0.5, 0.6]" """


def test_an_aggregator_spec_replaces_the_weighted_average(tmp_path: Path) -> None:
    recipe = numpy_recipe(
        num_rounds=2, train_args=ADD, aggregator={"path": PICK_SITE, "args": {"site": "site-2"}}
    )
    assert controller_args(recipe)["aggregator"] == {"path": PICK_SITE, "args": {"site": "site-2"}}
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    # site-2's model each round: +5 twice
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 10)
    records = round_records(run.get_result())
    assert [r["metrics"] for r in records] == [{"picked_sites": 2}] * 2


def test_an_aggregator_object_of_an_importable_class_is_rebuilt_from_its_arguments(
    tmp_path: Path,
) -> None:
    from support.fedavg_components import ElementwiseMax, PickSite

    recipe = numpy_recipe(aggregator=PickSite("site-1"))
    assert controller_args(recipe)["aggregator"] == {"path": PICK_SITE, "args": {"site": "site-1"}}
    recipe = numpy_recipe(num_rounds=2, train_args=ADD, aggregator=ElementwiseMax())
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    np.testing.assert_array_equal(global_model(run.get_result()), INITIAL + 10)
    # no metrics of its own: the sites' weighted mean
    assert [r["metrics"]["accuracy"] for r in round_records(run.get_result())] == [0.5, 0.6]


def test_an_aggregator_that_returns_no_flmodel_fails_the_job_naming_it(tmp_path: Path) -> None:
    recipe = numpy_recipe(aggregator={"path": "support.fedavg_components:NotAModel"})
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "NotAModel.result() returned dict, not an FLModel" in run.get_message()


def local_aggregator() -> Any:
    class LocalAggregator:
        def add(self, site: str, model: Any, weight: float) -> None: ...

        def result(self) -> Any: ...

    return LocalAggregator()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"path": "support.fedavg_components:NoResult"}, r"has no result\(\) method"),
        ({"path": "no_such_module:X"}, "cannot import 'no_such_module'"),
        ({"class_path": "x:Y"}, "aggregator must be"),
        ({"path": PICK_SITE, "args": {"site": object()}}, "must be JSON values"),
        (local_aggregator(), "which the server cannot import"),
    ],
)
def test_a_wrong_aggregator_is_refused(value: Any, message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        numpy_recipe(aggregator=value)


def test_an_aggregator_object_whose_arguments_cannot_be_read_back_is_refused() -> None:
    from support.fedavg_components import PickSite

    picker = PickSite("site-1")
    del picker.site
    with pytest.raises(RecipeArgumentError, match="keeps no attribute 'site'"):
        numpy_recipe(aggregator=picker)


def test_aggregator_data_kind_sets_the_params_transfer_type() -> None:
    assert (
        controller_args(numpy_recipe(aggregator_data_kind="WEIGHT_DIFF"))["params_transfer_type"]
        == "DIFF"
    )
    assert numpy_recipe(aggregator_data_kind="WEIGHT_DIFF").job.client.params_transfer_type == (
        "DIFF"
    )
    assert (
        controller_args(numpy_recipe(aggregator_data_kind="WEIGHTS"))["params_transfer_type"]
        == "FULL"
    )


def test_a_wrong_or_conflicting_aggregator_data_kind_is_refused() -> None:
    with pytest.raises(RecipeArgumentError, match="aggregator_data_kind"):
        numpy_recipe(aggregator_data_kind="METRICS")
    with pytest.raises(RecipeArgumentError, match="give one of them"):
        numpy_recipe(aggregator_data_kind="WEIGHTS", params_transfer_type="DIFF")


def test_model_persistor_replaces_the_frameworks_persistor(tmp_path: Path) -> None:
    spec = {
        "path": "support.fedavg_components:ConstantPersistor",
        "args": {"value": 10.0, "shape": [2, 3]},
    }
    recipe = numpy_recipe(num_rounds=2, model_persistor=spec)
    assert controller_args(recipe)["persistor"] == {
        "target": spec["path"],
        "args": spec["args"],
    }
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    np.testing.assert_array_equal(global_model(run.get_result()), np.full((2, 3), 12.0))


def test_a_model_persistor_without_save_and_load_is_refused() -> None:
    with pytest.raises(RecipeArgumentError, match=r"model_persistor: .* has no initial_params"):
        numpy_recipe(model_persistor={"path": PICK_SITE, "args": {"site": "x"}})


def test_model_locator_is_refused_as_fedavg_runs_no_cross_site_evaluation() -> None:
    with pytest.raises(RecipeArgumentError, match="model_locator is for cross-site evaluation"):
        numpy_recipe(model_locator={"path": "x:Y"})


def test_an_aggregator_path_in_nvflares_dotted_form_is_accepted() -> None:
    recipe = numpy_recipe(
        aggregator={"path": "support.fedavg_components.PickSite", "args": {"site": "site-1"}}
    )
    assert controller_args(recipe)["aggregator"] == {"path": PICK_SITE, "args": {"site": "site-1"}}


@pytest.mark.parametrize("empty", [True, False])
def test_cuda_empty_cache_decides_what_a_site_releases_every_gc_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty: bool
) -> None:
    import ember.streaming.memory as memory

    calls: list[bool] = []
    real = memory.release_memory

    def spy(cuda: bool = False) -> dict[str, int | bool]:
        calls.append(cuda)
        return real(cuda=cuda)

    monkeypatch.setattr(memory, "release_memory", spy)
    recipe = numpy_recipe(num_rounds=2, client_memory_gc_rounds=1, cuda_empty_cache=empty)
    run = run_sim(recipe, tmp_path)
    assert run.get_status() == COMPLETED, run.get_message()
    assert len(calls) == 4  # 2 sites x 2 rounds
    assert set(calls) == {empty}


def test_get_result_takes_nvflares_timeout_zero_as_no_limit_and_refuses_a_negative_one(
    tmp_path: Path,
) -> None:
    run = run_sim(numpy_recipe(num_rounds=1), tmp_path)
    assert Path(run.get_result(timeout=0.0, clean_up=True)).is_dir()  # results are kept
    assert run.get_status() == COMPLETED
    with pytest.raises(ValueError, match="timeout must be a number of seconds >= 0"):
        run.get_result(timeout=-1)
