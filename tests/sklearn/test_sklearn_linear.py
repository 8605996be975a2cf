"""SklearnFedAvgRecipe in SimEnv: the global model is the sample-weighted average."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sk_data import site_data

from ember.recipes import RecipeArgumentError
from ember_sklearn.client import build_estimator, load_linear_model, load_model
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
    np.testing.assert_allclose(
        model.decision_function(x) if estimator != "SGDRegressor" else model.predict(x),
        scores.squeeze(),
        rtol=1e-9,
        atol=1e-12,
    )
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


# -- NVFlare's way: no n_features, n_classes and fit_intercept=0/1 in model_params

FRESH_CLIENT = '''
"""Records what it receives; fits the spec's estimator (fresh in round 0) on its data."""
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

import ember.client as flare
from ember_sklearn import client as sk

flare.init()
index = int(flare.get_site_name().rsplit("-", 1)[-1])
out = Path(flare.get_config()["workspace"])
x, y = make_classification(n_samples=20 * index + 20, n_features=5, random_state=index)
estimator = None
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    spec = sk.model_spec(model)
    (out / f"spec_{model.current_round}.json").write_text(json.dumps(spec))
    np.savez(out / f"received_{model.current_round}.npz", **model.params)
    estimator = estimator or sk.build_estimator(spec)
    sk.set_linear_params(estimator, model.params, spec)
    estimator.fit(x, y)
    flare.send(
        flare.FLModel(
            params=sk.get_linear_params(estimator), meta={sk.NUM_STEPS_CURRENT_ROUND: len(x)}
        )
    )
'''


def _site_xy(index: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=20 * index + 20, n_features=5, random_state=index)
    return x, y


def _nvflare_style(tmp_path: Path, **kwargs: Any) -> SklearnFedAvgRecipe:
    script = tmp_path / "fresh_client.py"
    script.write_text(FRESH_CLIENT)
    options: dict[str, Any] = {
        "name": "sk-nvflare",
        "min_clients": 3,
        "num_rounds": 2,
        "model_params": {
            "n_classes": 2,
            "loss": "log_loss",
            "learning_rate": "constant",
            "eta0": 1e-2,
            "max_iter": 3,
            "tol": None,
            "random_state": 0,
            "fit_intercept": 1,
        },
        "key_metric": None,
        "train_script": str(script),
    }
    options.update(kwargs)
    return SklearnFedAvgRecipe(**options)


def test_without_n_features_the_first_rounds_average_of_fresh_site_fits_is_the_global_model(
    tmp_path: Path,
) -> None:
    recipe = _nvflare_style(tmp_path)
    assert recipe.model_spec["n_features"] is None
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())

    # by hand: each site fits the spec's estimator from scratch; average weighted by samples
    fits, weights = [], []
    for index in (1, 2, 3):
        x, y = _site_xy(index)
        estimator = build_estimator(recipe.model_spec).fit(x, y)
        fits.append({"coef": estimator.coef_, "intercept": estimator.intercept_})
        weights.append(float(len(x)))
    expected = {
        key: sum(w * f[key] for w, f in zip(weights, fits, strict=True)) / sum(weights)
        for key in ("coef", "intercept")
    }
    for site in SITES:
        assert _received(result, site, 0) == {}  # round 0's task carries no params
        first = json.loads((result / site / "spec_0.json").read_text())
        assert first == recipe.model_spec
        # round 1 warm-starts from the average of round 0's fresh fits; its spec knows n_features
        for key, value in _received(result, site, 1).items():
            np.testing.assert_allclose(value, expected[key], rtol=1e-12, atol=1e-15)
        later = json.loads((result / site / "spec_1.json").read_text())
        assert later == {**recipe.model_spec, "n_features": 5}
    params, spec = load_model(result / "server" / "models" / "global_model.npz")
    assert params["coef"].shape == (1, 5)
    assert spec == {**recipe.model_spec, "n_features": 5}
    model = load_linear_model(result / "server" / "models" / "global_model.npz")
    assert model.n_features_in_ == 5

    # one round: the saved global model is exactly that average
    run = run_sim(_nvflare_style(tmp_path, num_rounds=1), tmp_path / "one", num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    params, _ = load_model(Path(run.get_result()) / "server" / "models" / "global_model.npz")
    for key in ("coef", "intercept"):
        np.testing.assert_allclose(params[key], expected[key], rtol=1e-12, atol=1e-15)


def test_n_classes_in_model_params_maps_to_classes(tmp_path: Path) -> None:
    recipe = _nvflare_style(tmp_path, model_params={"n_classes": 3})
    assert recipe.model_spec["classes"] == [0, 1, 2]
    assert "n_classes" not in recipe.model_spec["params"]
    both = _nvflare_style(tmp_path, model_params={"n_classes": 2}, classes=["no", "yes"])
    assert both.model_spec["classes"] == ["no", "yes"]


def test_fit_intercept_given_as_0_or_1_becomes_a_bool(tmp_path: Path) -> None:
    for given, wanted in ((1, True), (0, False), (True, True)):
        params = {"n_classes": 2, "fit_intercept": given}
        spec = _nvflare_style(tmp_path, model_params=params).model_spec
        assert spec["params"]["fit_intercept"] is wanted
        assert build_estimator(spec).fit_intercept is wanted


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model_params": {"n_classes": 2}, "classes": [0, 1, 2]}, r"n_classes'\]=2 but class"),
        (
            {"model_params": {"n_classes": 1}},
            r"model_params\['n_classes'\] must be an integer >= 2",
        ),
        ({"model_params": {"n_classes": True}}, r"n_classes'\] must be an integer >= 2"),
        ({"model_params": {"n_classes": "2"}}, r"n_classes'\] must be an integer >= 2"),
        (
            {"estimator": "SGDRegressor", "model_params": {"n_classes": 2}},
            r"model_params\['n_classes'\] is for classifiers; SGDRegressor takes none",
        ),
        ({"model_params": {}}, r"classes must list the labels.*n_classes"),
        (
            {"model_params": {"n_classes": 2, "fit_intercept": 2}},
            r"model_params\['fit_intercept'\] must be True/False \(or 0/1\), got 2",
        ),
        ({"model_params": {"n_classes": 2, "fit_intercept": "1"}}, r"fit_intercept'\] must be"),
        ({"n_features": 0}, r"n_features must be an integer >= 1, got 0"),
        ({"params_transfer_type": "DIFF"}, r"'DIFF' needs a global model to start from"),
    ],
)
def test_bad_nvflare_style_values_give_clear_errors(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        _nvflare_style(tmp_path, **overrides)


def test_without_n_features_a_site_whose_shapes_differ_from_the_first_fails_the_job(
    tmp_path: Path,
) -> None:
    from ember.common import FLModel
    from ember.controllers import JobError
    from ember_sklearn.linear import LinearFedAvgController, set_linear_params
    from ember_sklearn.spec import SPEC_KEY

    spec = _nvflare_style(tmp_path).model_spec
    persistor = {"target": "ember_sklearn.linear:LinearPersistor", "args": {"model_spec": spec}}
    controller = LinearFedAvgController(
        model_spec=spec, num_rounds=2, min_clients=2, persistor=persistor
    )
    assert controller.persistor.initial_params(tmp_path) == {}  # round 0 carries no params
    good = {"coef": np.zeros((1, 5)), "intercept": np.zeros(1)}
    controller.result_received("site-1", FLModel(params=good), 1.0)
    assert controller.round_task_meta(1)[SPEC_KEY]["n_features"] == 5
    bad = {"coef": np.zeros((1, 4)), "intercept": np.zeros(1)}
    with pytest.raises(JobError, match=r"site-2's result \(shapes as site-1's\)\['coef'\] must"):
        controller.result_received("site-2", FLModel(params=bad), 1.0)
    # a site given no params keeps its fresh estimator
    estimator = build_estimator(spec)
    assert set_linear_params(estimator, {}, spec) is estimator
    assert not hasattr(estimator, "coef_")
