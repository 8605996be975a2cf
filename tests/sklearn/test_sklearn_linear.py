"""SklearnFedAvgRecipe in SimEnv: the global model is the sample-weighted average."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sk_data import site_data

from ember_sklearn.client import load_linear_model, load_model
from ember_sklearn.recipes import SklearnFedAvgRecipe
from support.sim import round_records, run_sim

SCRIPTS = Path(__file__).parent / "scripts"
COMPLETED = "FINISHED:COMPLETED"
SITES = ["site-1", "site-2", "site-3"]
FRACTIONS = [0.5, 0.3, 0.2]


def _recipe(**kwargs: Any) -> SklearnFedAvgRecipe:
    options: dict[str, Any] = {
        "name": "sk-linear",
        "min_clients": 3,
        "num_rounds": 2,
        "n_features": 30,
        "classes": [0, 1],
        "model_params": {"loss": "log_loss", "max_iter": 3, "tol": None, "random_state": 0},
        "train_script": str(SCRIPTS / "sk_linear_client.py"),
        "train_args": f"--fractions '{json.dumps(FRACTIONS)}'",
    }
    options.update(kwargs)
    return SklearnFedAvgRecipe(**options)


def _sent(result: Path, site: str, rnd: int) -> dict[str, np.ndarray]:
    with np.load(result / site / f"sent_{rnd}.npz") as data:
        return {k: data[k] for k in data.files}


def _received(result: Path, site: str, rnd: int) -> dict[str, np.ndarray]:
    with np.load(result / site / f"received_{rnd}.npz") as data:
        return {k: data[k] for k in data.files}


def _weighted_average(result: Path, rnd: int) -> dict[str, np.ndarray]:
    """By hand: sum(n_i * params_i) / sum(n_i) over what the sites sent in round ``rnd``."""
    sent = [_sent(result, site, rnd) for site in SITES]
    n = np.array([float(s["n_samples"]) for s in sent])
    return {
        key: sum(w * s[key] for w, s in zip(n, sent, strict=True)) / n.sum()
        for key in ("coef", "intercept")
    }


@pytest.mark.parametrize(
    ("estimator", "dataset", "extra"),
    [
        ("SGDClassifier", "breast_cancer", {}),
        ("LogisticRegression", "iris", {"n_features": 4, "classes": [0, 1, 2]}),
        ("SGDRegressor", "diabetes", {"n_features": 10, "classes": None, "key_metric": None}),
    ],
)
def test_global_model_is_the_sample_weighted_average(
    tmp_path: Path, estimator: str, dataset: str, extra: dict[str, Any]
) -> None:
    params = {"max_iter": 3, "tol": None, "random_state": 0}
    if estimator == "LogisticRegression":
        params = {"max_iter": 200, "C": 1.0}
    recipe = _recipe(
        estimator=estimator,
        model_params=params,
        train_args=f"--dataset {dataset} --fractions '{json.dumps(FRACTIONS)}'",
        **extra,
    )
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())

    # round 0 starts from zeros of scikit-learn's shapes; each site warm-starts from it
    shapes = {"SGDClassifier": (1, 30), "LogisticRegression": (3, 4), "SGDRegressor": (10,)}
    for site in SITES:
        received = _received(result, site, 0)
        assert received["coef"].shape == shapes[estimator]
        assert not received["coef"].any()
        assert not received["intercept"].any()
        assert json.loads((result / site / "spec.json").read_text()) == recipe.model_spec
    # sites hold 50/30/20 % of the data: the weights are unequal
    n = [int(_sent(result, site, 0)["n_samples"]) for site in SITES]
    assert n[0] > n[1] > n[2]

    # what round 1 received is the weighted average of round 0; the saved model of round 1
    round0 = _weighted_average(result, 0)
    for site in SITES:
        for key, value in _received(result, site, 1).items():
            np.testing.assert_allclose(value, round0[key], rtol=1e-12, atol=1e-15)
    expected = _weighted_average(result, 1)
    unweighted = np.mean([_sent(result, site, 1)["coef"] for site in SITES], axis=0)
    assert not np.allclose(expected["coef"], unweighted)
    params_saved, spec = load_model(result / "server" / "models" / "global_model.npz")
    assert set(params_saved) == {"coef", "intercept"}
    for key in ("coef", "intercept"):
        np.testing.assert_allclose(params_saved[key], expected[key], rtol=1e-12, atol=1e-15)
    assert spec == recipe.model_spec

    # the saved model loads as a scikit-learn estimator that predicts with those params
    model = load_linear_model(result / "server" / "models" / "global_model.npz")
    assert type(model).__name__ == estimator
    x, _ = site_data(dataset, "site-1", FRACTIONS)
    coef = expected["coef"].reshape(-1, x.shape[1])
    scores = x @ coef.T + expected["intercept"]
    np.testing.assert_allclose(model.decision_function(x) if estimator != "SGDRegressor"
                               else model.predict(x), scores.squeeze(), rtol=1e-9, atol=1e-12)
    assert [r["sites"] for r in round_records(result)] == [SITES, SITES]


def test_initial_params_and_best_model(tmp_path: Path) -> None:
    initial = {"coef": np.full((1, 30), 0.01), "intercept": np.array([0.5])}
    run = run_sim(_recipe(initial_params=initial), tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())
    for site in SITES:
        np.testing.assert_array_equal(_received(result, site, 0)["coef"], initial["coef"])
        np.testing.assert_array_equal(_received(result, site, 0)["intercept"], [0.5])
    # accuracy is measured on the received model; the best round's model is saved as such
    records = round_records(result)
    best = max(range(2), key=lambda r: records[r]["metrics"]["accuracy"])
    params, _ = load_model(result / "server" / "models" / "best_model.npz")
    np.testing.assert_array_equal(params["coef"], _received(result, "site-1", best)["coef"])
    models = sorted(p.name for p in (result / "server" / "models").iterdir())
    assert models == ["best_model.json", "best_model.npz", "global_model.json", "global_model.npz"]


def test_initial_checkpoint_is_checked_by_the_server(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, coef=np.full((1, 30), -0.02), intercept=np.array([0.1]))
    run = run_sim(_recipe(initial_ckpt=str(good), num_rounds=1), tmp_path / "a", num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    received = _received(Path(run.get_result()), "site-2", 0)
    np.testing.assert_array_equal(received["coef"], np.full((1, 30), -0.02))

    bad = tmp_path / "bad.npz"
    np.savez(bad, coef=np.zeros((3, 30)), intercept=np.zeros(3))
    run = run_sim(_recipe(initial_ckpt=str(bad), num_rounds=1), tmp_path / "b", num_clients=3)
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "initial model bad.npz['coef'] must have shape (1, 30)" in run.get_message()
