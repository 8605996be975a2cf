"""FedAvgLrRecipe: federated Newton-Raphson equals centralised Newton-Raphson, step by step."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember.client import NUMPY_KEY, FLModel
from ember.newton_raphson import NewtonRaphsonError, fit, gradient_hessian, site_result
from ember.recipes import FedAvgLrRecipe, RecipeArgumentError
from support.sim import SCRIPTS, global_model, round_records, run_sim

SITE_SCRIPT = str(SCRIPTS / "lr_site.py")
SIZES = (120, 70, 50)  # unequal sites: a mean of means would differ from the whole's
NUM_FEATURES = 4


def _data() -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes (not separable), so Newton-Raphson converges."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(sum(SIZES), NUM_FEATURES))
    true_w = np.array([0.5, -1.0, 2.0, 0.0, 0.7])
    p = 1.0 / (1.0 + np.exp(-(true_w[0] + x @ true_w[1:])))
    y = (rng.random(len(x)) < p).astype(np.float64)
    return x, y


def _split(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    x, y = _data()
    folder = tmp_path / "data"
    folder.mkdir()
    start = 0
    for i, size in enumerate(SIZES):
        np.savez(folder / f"site-{i + 1}.npz", X=x[start : start + size], y=y[start : start + size])
        start += size
    return x, y, folder


def _recipe(data_dir: Path, **kwargs: Any) -> FedAvgLrRecipe:
    options: dict[str, Any] = {
        "name": "lr-test",
        "num_features": NUM_FEATURES,
        "min_clients": 3,
        "num_rounds": 6,
        "train_script": SITE_SCRIPT,
        "train_args": f"--data-dir {data_dir}",
    }
    options.update(kwargs)
    return FedAvgLrRecipe(**options)


@pytest.mark.parametrize(("damping_factor", "epsilon"), [(0.8, 0.0), (1.0, 2.5)])
def test_the_federated_iterates_equal_centralised_newton_raphson_within_1e_10(
    tmp_path: Path, damping_factor: float, epsilon: float
) -> None:
    x, y, data_dir = _split(tmp_path)
    recipe = _recipe(data_dir, damping_factor=damping_factor, epsilon=epsilon)
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    result = Path(run.get_result())
    with np.load(result / "server" / "newton_raphson.npz") as history:
        iterates, losses = history["weights"], history["loss"]
    expected = fit(x, y, num_rounds=6, damping_factor=damping_factor, epsilon=epsilon)
    assert iterates.shape == (7, NUM_FEATURES + 1)
    np.testing.assert_allclose(iterates, expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(global_model(result), iterates[-1])
    # the loss recorded each round is the whole federation's, at the weights sent
    expected_losses = [gradient_hessian(x, y, w)[2] for w in expected[:-1]]
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-12)
    records = round_records(result)
    assert [r["metrics"]["samples"] for r in records] == [float(sum(SIZES))] * 6
    assert records[0]["sites"] == ["site-1", "site-2", "site-3"]
    assert records[-1]["metrics"]["loss"] < records[0]["metrics"]["loss"]


def test_the_full_step_converges_to_the_maximum_likelihood_weights(tmp_path: Path) -> None:
    x, y = _data()
    weights = fit(x, y, num_rounds=12, damping_factor=1.0)[-1]
    gradient, _, _ = gradient_hessian(x, y, weights)
    assert np.max(np.abs(gradient)) < 1e-8


def test_the_site_helper_sends_the_sums_and_the_sample_count() -> None:
    x, y = _data()
    model = FLModel(params={NUMPY_KEY: np.zeros(NUM_FEATURES + 1)}, current_round=3)
    result = site_result(x[:10], y[:10], model)
    gradient, hessian, loss = gradient_hessian(x[:10], y[:10], np.zeros(NUM_FEATURES + 1))
    np.testing.assert_array_equal(result.params["gradient"], gradient)
    np.testing.assert_array_equal(result.params["hessian"], hessian)
    assert result.meta["NUM_STEPS_CURRENT_ROUND"] == 10
    assert result.metrics == {"loss": loss}
    assert loss == pytest.approx(10 * np.log(2.0))  # p = 1/2 everywhere at w = 0
    assert result.current_round == 3


@pytest.mark.parametrize(
    ("x", "y", "w", "message"),
    [
        (np.zeros((3, 2)), [0, 1, 1], np.zeros(4), "the weights have 4 values but X has 2"),
        (np.zeros((3, 2)), [0, 1], np.zeros(3), "X has 3 samples but y has 2 labels"),
        (np.zeros((3, 2)), [0, 2, 1], np.zeros(3), "binary labels"),
        (np.zeros(3), [0, 1, 1], np.zeros(2), "2-D array"),
    ],
)
def test_the_site_helper_refuses_data_it_cannot_use(x: Any, y: Any, w: Any, message: str) -> None:
    with pytest.raises(NewtonRaphsonError, match=message):
        gradient_hessian(x, y, w)


def test_a_site_sending_a_hessian_of_the_wrong_shape_fails_the_job_naming_it(
    tmp_path: Path,
) -> None:
    _, _, data_dir = _split(tmp_path)
    recipe = _recipe(data_dir, train_args=f"--data-dir {data_dir} --bad site-2")
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "site-2 sent 'hessian' of shape (2, 2), expected (5, 5)" in run.get_message()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_features": 0}, "num_features must be an integer >= 1, got 0"),
        ({"num_rounds": 0}, "num_rounds must be an integer >= 1"),
        ({"min_clients": 0}, "min_clients must be an integer >= 1"),
        ({"damping_factor": 0.0}, r"damping_factor must be in \(0, 1\]"),
        ({"damping_factor": 1.5}, r"damping_factor must be in \(0, 1\]"),
        ({"damping_factor": "0.8"}, "damping_factor must be a finite number"),
        ({"epsilon": -1.0}, "epsilon must be >= 0"),
        ({"epsilon": float("nan")}, "epsilon must be a finite number"),
        ({"train_script": "missing.py"}, "train_script 'missing.py' does not exist"),
    ],
)
def test_bad_parameters_are_refused_by_name(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        _recipe(tmp_path, **kwargs)


def test_the_recipe_takes_nvflare_parameter_names_and_writes_the_controller_args(
    tmp_path: Path,
) -> None:
    assert list(inspect.signature(FedAvgLrRecipe).parameters)[:6] == [
        "name",
        "num_features",
        "min_clients",
        "num_rounds",
        "damping_factor",
        "epsilon",
    ]
    recipe = FedAvgLrRecipe(num_rounds=3, damping_factor=0.5, train_script=SITE_SCRIPT)
    assert recipe.name == "lr_fedavg"
    (workflow,) = recipe.job.workflows
    assert workflow == {
        "target": "ember.controllers:NewtonRaphsonController",
        "args": {
            "num_features": 13,
            "num_rounds": 3,
            "min_clients": 1,
            "damping_factor": 0.5,
            "epsilon": 0.0,
        },
    }


def test_the_hello_lr_example_matches_centralised_newton_raphson(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    example = Path(__file__).parents[2] / "examples" / "hello-lr" / "job.py"
    done = subprocess.run(
        [sys.executable, str(example), "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "status: FINISHED:COMPLETED" in done.stdout
    match = re.search(r"over all rounds: (\S+)", done.stdout)
    assert match is not None, done.stdout
    assert float(match.group(1)) < 1e-10
    accuracy = re.search(r"test accuracy of the global weights: (\S+)", done.stdout)
    assert accuracy is not None
    assert float(accuracy.group(1)) > 0.9


def test_sites_in_their_own_processes_give_the_same_iterates(tmp_path: Path) -> None:
    x, y, data_dir = _split(tmp_path)
    run = run_sim(_recipe(data_dir, launch_external_process=True), tmp_path, num_clients=3)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    with np.load(Path(run.get_result()) / "server" / "newton_raphson.npz") as history:
        iterates = history["weights"]
    np.testing.assert_allclose(iterates, fit(x, y, num_rounds=6), rtol=0, atol=1e-10)
