"""Cross-site evaluation: NumpyCrossSiteEvalRecipe, add_cross_site_evaluation's parameters,
add_final_global_evaluation, the matrix files."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ember import SimEnv
from ember.client import NUMPY_KEY
from ember.common.messages import TaskName, TaskResult
from ember.common.model import FLModel
from ember.errors import MissingDependencyError
from ember.recipes import (
    NumpyCrossSiteEvalRecipe,
    RecipeArgumentError,
    add_cross_site_evaluation,
    add_final_global_evaluation,
)
from ember.recipes.np_validator import score
from ember.runtime.controllers import cross_site_eval
from ember.runtime.controllers.cross_site_eval import CrossSiteEvalController
from ember.runtime.errors import JobError
from support.sim import SCRIPTS, numpy_recipe, run_sim

COMPLETED = "FINISHED:COMPLETED"
EVAL_SCRIPT = str(SCRIPTS / "cse_eval.py")


def _run(recipe: Any, tmp_path: Path, num_clients: int = 3) -> Path:
    env = SimEnv(workspace_root=str(tmp_path / "ws"), progress=False, num_clients=num_clients)
    run = recipe.execute(env)
    assert run.get_status() == COMPLETED, run.get_message()
    return Path(run.get_result()) / "server" / "cross_site_eval"


def _models(tmp_path: Path, **arrays: Any) -> Path:
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.asarray(array, dtype=np.float64))
    return folder


# --- the matrix ------------------------------------------------------------------------


def test_the_matrix_holds_each_sites_score_of_each_model_as_computed_by_hand(
    tmp_path: Path,
) -> None:
    folder = _models(tmp_path, a=[1, 2], b=[[3, 4], [5, 6]])
    recipe = NumpyCrossSiteEvalRecipe(
        min_clients=3,
        model_dir=str(folder),
        model_name={"a": "a.npy", "b": "b.npy"},
        eval_script=EVAL_SCRIPT,
        submit_models=True,
    )
    out = _run(recipe, tmp_path)
    matrix = json.loads((out / "cross_val_matrix.json").read_text())
    assert matrix["sites"] == ["site-1", "site-2", "site-3"]
    assert matrix["models"] == ["SRV_a", "SRV_b", "site-1", "site-2", "site-3"]
    # site-N scores w as N * sum(w); site-M's own model is [M, M], so sum 2M
    sums = [3.0, 18.0, 2.0, 4.0, 6.0]
    expected = [[n * s for s in sums] for n in (1, 2, 3)]
    assert matrix["metrics"] == {"score": expected}  # "owner" is a string: not in the matrix
    results = json.loads((out / "cross_val_results.json").read_text())
    assert results["site-2"]["SRV_b"] == {"score": 36.0, "owner": "SRV_b"}
    assert results["site-3"]["site-1"]["owner"] == "site-1"


def test_a_relative_model_dir_is_bundled_into_the_job_and_initial_ckpt_is_the_server_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _models(tmp_path, m=[2, 2, 2], server=[1, 3])
    monkeypatch.chdir(tmp_path)
    recipe = NumpyCrossSiteEvalRecipe(
        min_clients=2,
        model_dir="models",
        model_name={"m": "m.npy"},
        initial_ckpt="models/server.npy",
    )
    job_dir = recipe.export(tmp_path / "job")
    assert (job_dir / "app" / "cse_models" / "m.npy").is_file()
    assert (job_dir / "app" / "cse_models" / "server.npy").is_file()
    matrix = json.loads((_run(recipe, tmp_path, 2) / "cross_val_matrix.json").read_text())
    assert matrix["models"] == ["SRV_m", "SRV_server"]
    assert matrix["metrics"]["accuracy"] == [[3.0, pytest.approx(4.0 / 3.0)]] * 2


# --- the built-in validator ------------------------------------------------------------


def test_the_built_in_validator_scores_the_sum_of_the_weights_over_their_max() -> None:
    assert score({NUMPY_KEY: np.array([1.0, 2.0, 4.0])}) == {"accuracy": 1.75}
    # several arrays: flattened into one vector, one max
    assert score({"w": np.array([[1.0, 3.0]]), "b": np.array([6.0])}) == {
        "accuracy": pytest.approx(10 / 6)
    }
    assert score({NUMPY_KEY: np.zeros(3)}) == {"accuracy": 0.0}
    assert score({}) == {"accuracy": 0.0}


def test_without_eval_script_every_site_runs_the_built_in_validator(tmp_path: Path) -> None:
    folder = _models(tmp_path, server=[[1, 2, 3], [4, 5, 6]])
    out = _run(NumpyCrossSiteEvalRecipe(min_clients=3, model_dir=str(folder)), tmp_path)
    matrix = json.loads((out / "cross_val_matrix.json").read_text())
    assert matrix["models"] == ["SRV_server"]  # NVFlare's default model_name
    assert matrix["metrics"] == {"accuracy": [[pytest.approx(21 / 6)]] * 3}


# --- the new parameters ----------------------------------------------------------------


def test_participating_clients_restricts_who_submits_and_who_validates(tmp_path: Path) -> None:
    recipe = add_cross_site_evaluation(
        numpy_recipe(num_rounds=1), participating_clients=["site-1", "site-3"]
    )
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    out = Path(run.get_result()) / "server" / "cross_site_eval"
    results = json.loads((out / "cross_val_results.json").read_text())
    assert set(results) == {"site-1", "site-3"}
    for validator in results.values():
        assert set(validator) == {"SRV_global_model", "site-1", "site-3"}
    matrix = json.loads((out / "cross_val_matrix.json").read_text())
    assert matrix["sites"] == ["site-1", "site-3"]
    assert matrix["models"] == ["SRV_global_model", "site-1", "site-3"]


def test_the_final_global_evaluation_validates_only_the_global_model(tmp_path: Path) -> None:
    recipe = add_final_global_evaluation(
        numpy_recipe(num_rounds=1), participating_clients=["site-2"], validation_timeout=30
    )
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    out = Path(run.get_result()) / "server" / "cross_site_eval"
    results = json.loads((out / "cross_val_results.json").read_text())
    # the global model after one round is INITIAL + 1, whose mean is 3.5
    assert results == {"site-2": {"SRV_global_model": {"accuracy": pytest.approx(3.5)}}}


def test_the_timeouts_and_participants_reach_the_controllers_arguments() -> None:
    recipe = add_cross_site_evaluation(
        numpy_recipe(),
        submit_model_timeout=12,
        validation_timeout=34.5,
        participating_clients=["site-2"],
    )
    args = recipe.job.workflows[-1]["args"]
    assert args["submit_model_timeout"] == 12.0
    assert args["validation_timeout"] == 34.5
    assert args["participating_clients"] == ["site-2"]
    final = add_final_global_evaluation(numpy_recipe(), validation_timeout=5)
    assert final.job.workflows[-1]["args"]["validation_timeout"] == 5.0
    assert final.job.workflows[-1]["args"]["submit_models"] is False


class FakeBoard:
    """The part of the task board the controller uses; records each broadcast."""

    def __init__(self, sites: list[str], alive: list[str] | None = None) -> None:
        self.sites = {s: None for s in sites}
        self.alive = list(sites if alive is None else alive)
        self.calls: list[tuple[str, list[str], int, float]] = []

    def alive_sites(self) -> list[str]:
        return list(self.alive)

    def broadcast(
        self, name: str, data: Any, targets: list[str], min_responses: int, timeout: float, on
    ) -> None:
        self.calls.append((name, list(targets), min_responses, timeout))
        for site in targets:
            if name == TaskName.SUBMIT_MODEL:
                model = FLModel(params={NUMPY_KEY: np.ones(2)})
            else:
                model = FLModel(metrics={"m": float(np.sum(data.params[NUMPY_KEY]))})
            on(site, TaskResult("t", site, data=model))


def _ctx(tmp_path: Path, board: FakeBoard, **state: Any) -> Any:
    return SimpleNamespace(
        board=board,
        server_dir=tmp_path / "server",
        job_dir=tmp_path,
        task_timeout=7.0,
        state=dict(state),
        log=logging.getLogger("test.cse"),
    )


def test_the_controller_gives_each_kind_of_task_its_own_timeout(tmp_path: Path) -> None:
    board = FakeBoard(["site-1", "site-2"])
    ctx = _ctx(tmp_path, board, global_params={NUMPY_KEY: np.zeros(2)})
    CrossSiteEvalController(2, submit_model_timeout=3, validation_timeout=9).run(ctx)
    timeouts = {(name, timeout) for name, _, _, timeout in board.calls}
    assert timeouts == {(TaskName.SUBMIT_MODEL, 3.0), (TaskName.VALIDATE, 9.0)}
    board = FakeBoard(["site-1", "site-2"])
    CrossSiteEvalController(2).run(_ctx(tmp_path, board, global_params={NUMPY_KEY: np.zeros(2)}))
    assert {timeout for *_, timeout in board.calls} == {7.0}  # None: the job's task_timeout


def test_fewer_participants_than_min_clients_lowers_the_answers_needed(tmp_path: Path) -> None:
    board = FakeBoard(["site-1", "site-2", "site-3"])
    ctx = _ctx(tmp_path, board, global_params={NUMPY_KEY: np.zeros(2)})
    CrossSiteEvalController(3, participating_clients=["site-3"]).run(ctx)
    assert {(tuple(targets), needed) for _, targets, needed, _ in board.calls} == {(("site-3",), 1)}


def test_a_participant_that_is_not_a_site_of_the_job_fails_naming_it(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeBoard(["site-1", "site-2"]), global_params={NUMPY_KEY: np.ones(1)})
    controller = CrossSiteEvalController(1, participating_clients=["site-1", "site-9"])
    with pytest.raises(
        JobError, match=r"site-9, not sites of this job \(its sites: site-1, site-2"
    ):
        controller.run(ctx)


def test_a_final_global_evaluation_without_a_global_model_fails_saying_so(tmp_path: Path) -> None:
    controller = CrossSiteEvalController(1, submit_models=False, require_global=True)
    with pytest.raises(JobError, match="found no global model"):
        controller.run(_ctx(tmp_path, FakeBoard(["site-1"])))


@pytest.mark.parametrize("value", [0, -1, "10", True, float("nan")])
@pytest.mark.parametrize("name", ["submit_model_timeout", "validation_timeout"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(
    name: str, value: Any
) -> None:
    with pytest.raises(RecipeArgumentError, match=f"{name} must be a number of seconds > 0"):
        add_cross_site_evaluation(numpy_recipe(), **{name: value})
    with pytest.raises(RecipeArgumentError, match=f"{name} must be a number of seconds > 0"):
        NumpyCrossSiteEvalRecipe(initial_ckpt="/abs/m.npy", **{name: value})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("site-1", "must be a list of site names"),
        ([1], "must be a list of site names"),
        ([""], "must be a list of site names"),
        ([], "must name at least one site"),
        (["site-1", "site-1"], "names site-1 more than once"),
    ],
)
def test_wrong_participating_clients_are_refused_saying_why(value: Any, message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        add_cross_site_evaluation(numpy_recipe(), participating_clients=value)
    with pytest.raises(RecipeArgumentError, match=message):
        add_final_global_evaluation(numpy_recipe(), participating_clients=value)


def test_cross_site_evaluation_is_added_once(tmp_path: Path) -> None:
    recipe = add_cross_site_evaluation(numpy_recipe())
    with pytest.raises(RecipeArgumentError, match="already added"):
        add_final_global_evaluation(recipe)
    with pytest.raises(RecipeArgumentError, match="already added"):
        add_cross_site_evaluation(NumpyCrossSiteEvalRecipe(initial_ckpt="/abs/m.npy"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_name": ["a.npy"]}, "model_name must be a dict"),
        ({"model_name": {}}, "model_name must be a dict"),
        ({"model_name": {"a/b": "x.npy"}}, "model ids"),
        ({"model_name": {"a": "a.pt"}}, "must be a .npy or .npz file"),
        ({"model_name": {"a": "missing.npy"}}, "does not exist"),
        ({"model_name": {"server": "s.npy"}, "initial_ckpt": "/abs/s.npy"}, "drop one of them"),
        ({"initial_ckpt": "/abs/s.npy", "eval_args": "--x"}, "give eval_script too"),
        ({"initial_ckpt": "/abs/s.npy", "submit_models": True}, "needs an eval_script"),
        ({"initial_ckpt": "/abs/s.npy", "eval_script": "nope.py"}, "does not exist"),
        ({"initial_ckpt": "/abs/s.npy", "min_clients": 0}, "min_clients"),
    ],
)
def test_wrong_recipe_arguments_are_refused_saying_why(
    kwargs: dict[str, Any], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeArgumentError, match=message):
        NumpyCrossSiteEvalRecipe(**kwargs)


def test_an_absolute_model_path_is_left_to_the_server() -> None:
    recipe = NumpyCrossSiteEvalRecipe(model_dir="/srv/models", model_name={"a": "a.npz"})
    assert recipe.job.workflows[0]["args"]["models"] == {"a": "/srv/models/a.npz"}
    assert recipe.job.meta["framework"] == "numpy"


# --- the heat map ----------------------------------------------------------------------


def test_the_heat_map_png_is_written_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    board = FakeBoard(["site-1", "site-2"])
    CrossSiteEvalController(2).run(_ctx(tmp_path, board, global_params={NUMPY_KEY: np.ones(2)}))
    png = tmp_path / "server" / "cross_site_eval" / "cross_val_matrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_png_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def missing(module: str, extra: str, purpose: str) -> Any:
        raise MissingDependencyError(f"{purpose} needs matplotlib: pip install 'ember-core[plots]'")

    monkeypatch.setattr(cross_site_eval, "require", missing)
    board = FakeBoard(["site-1"])
    with caplog.at_level(logging.WARNING, logger="test.cse"):
        CrossSiteEvalController(1).run(_ctx(tmp_path, board, global_params={NUMPY_KEY: np.ones(2)}))
    out = tmp_path / "server" / "cross_site_eval"
    assert not (out / "cross_val_matrix.png").exists()
    assert json.loads((out / "cross_val_matrix.json").read_text())["metrics"] == {"m": [[2.0, 2.0]]}
    assert "ember-core[plots]" in caplog.text


# --- the example -----------------------------------------------------------------------

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello-numpy-cross-val" / "job.py"


@pytest.mark.parametrize(
    ("args", "models", "first_row"),
    [
        ([], ["SRV_model_1", "SRV_model_2"], [6.0, 3.5]),
        (["--eval-script"], ["SRV_model_1", "SRV_model_2"], [1.0, 1 / (1 + 2.5)]),
        (["--mode", "train"], ["SRV_global_model", "site-1", "site-2"], [0.5, 0.5, 0.5]),
    ],
)
def test_the_hello_numpy_cross_val_example_writes_its_matrix(
    args: list[str], models: list[str], first_row: list[float], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args, "--workspace-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    name = "hello-numpy-train-cse" if "train" in args else "hello-numpy-cross-val"
    out = tmp_path / name / "server" / "cross_site_eval" / "cross_val_matrix.json"
    matrix = json.loads(out.read_text())
    assert matrix["models"] == models
    assert matrix["metrics"]["accuracy"][0] == pytest.approx(first_row)
