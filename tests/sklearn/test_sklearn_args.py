"""Recipe arguments are checked when the recipe is built; errors name the argument."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember.recipes import RecipeArgumentError
from ember_sklearn.recipes import KMeansFedAvgRecipe, SklearnFedAvgRecipe, SVMFedAvgRecipe

SCRIPTS = Path(__file__).parent / "scripts"

LINEAR = {
    "min_clients": 2,
    "n_features": 30,
    "classes": [0, 1],
    "train_script": str(SCRIPTS / "sk_linear_client.py"),
}
KMEANS = {"min_clients": 2, "n_clusters": 3, "train_script": str(SCRIPTS / "sk_kmeans_client.py")}
SVM = {"min_clients": 2, "train_script": str(SCRIPTS / "sk_svm_client.py")}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"estimator": "Ridge"}, r"estimator must be one of \['SGDClassifier', 'SGDRegressor'"),
        ({"model_params": {"loss": "nope"}}, r"model_params: The 'loss' parameter of SGDClass"),
        ({"model_params": {"bogus": 1}}, r"SGDClassifier has no parameter 'bogus'; valid names"),
        ({"model_params": {"alpha": np.float32(1)}}, r"model_params\['alpha'\] must be a JSON"),
        ({"model_params": {"warm_start": False}}, r"model_params\['warm_start'\] must be True"),
        (
            {"estimator": "LogisticRegression", "model_params": {"solver": "liblinear"}},
            r"'liblinear' cannot warm-start; use one of \['lbfgs'",
        ),
        ({"classes": None}, r"classes must list the labels"),
        ({"classes": [1, 1]}, r"classes must list the labels"),
        ({"estimator": "SGDRegressor"}, r"classes is for classifiers; SGDRegressor takes none"),
        ({"n_features": 0}, r"n_features must be an integer >= 1, got 0"),
        ({"initial_params": {"coef": np.zeros((1, 3))}}, r"must hold exactly \['coef', 'inter"),
        (
            {"initial_params": {"coef": np.zeros((2, 30)), "intercept": np.zeros(1)}},
            r"initial_params\['coef'\] must have shape \(1, 30\)",
        ),
        ({"initial_params": {}}, r"initial_params must hold exactly \['coef', 'intercept'\]"),
        ({"initial_params": [1, 2]}, r"initial_params must be a dict \{'coef': array"),
        ({"initial_params": {}, "initial_ckpt": "x.npz"}, r"initial_params or initial_ckpt"),
        ({"initial_ckpt": "model.pkl"}, r"initial_ckpt must be a path ending in .npz"),
        ({"min_clients": 0}, r"min_clients must be an integer >= 1"),
        ({"num_rounds": 0}, r"num_rounds must be an integer >= 1"),
        ({"train_script": "nowhere.py"}, r"train_script 'nowhere.py' does not exist"),
        ({"key_metric_mode": "up"}, r"key_metric_mode must be one of \['max', 'min'\]"),
    ],
)
def test_linear_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        SklearnFedAvgRecipe(**{**LINEAR, **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_clusters": 0}, r"n_clusters must be an integer >= 1, got 0"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"n_init": "auto"}, r"n_init must be an integer >= 1, got 'auto'"),
        ({"seed": -1}, r"seed must be an integer >= 0"),
        ({"num_rounds": 0}, r"num_rounds must be an integer >= 1"),
        ({"name": "a/b"}, r"name must start with a letter or digit"),
        ({"train_args": ["--x"]}, r"train_args must be a string"),
        ({"launch_external_process": "yes"}, r"launch_external_process must be True or False"),
    ],
)
def test_kmeans_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        KMeansFedAvgRecipe(**{**KMEANS, **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kernel": "precomputed"}, r"kernel must be one of \['linear', 'poly', 'rbf', 'sigm"),
        ({"C": 0}, r"C must be a number > 0, got 0"),
        ({"gamma": "large"}, r"gamma must be 'scale', 'auto' or a number > 0"),
        ({"gamma": -1.0}, r"gamma must be a number > 0"),
        ({"degree": -1}, r"degree must be an integer >= 0"),
        ({"model_params": {"probability": True}}, r"model_params may only set \['cache_size'"),
        ({"model_params": {"class_weight": {"0": 2}}}, r"class_weight'\] must be None or 'bal"),
        ({"model_params": {"tol": "tight"}}, r"model_params: The 'tol' parameter of SVC"),
        ({"min_clients": 0}, r"min_clients must be an integer >= 1"),
    ],
)
def test_svm_arguments(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeArgumentError, match=message):
        SVMFedAvgRecipe(**{**SVM, **overrides})


def test_exported_jobs_name_the_sklearn_controllers(tmp_path: Path) -> None:
    recipes = {
        "linear": SklearnFedAvgRecipe(**LINEAR, model_params={"loss": "log_loss"}),
        "kmeans": KMeansFedAvgRecipe(**KMEANS, batch_size=10),
        "svm": SVMFedAvgRecipe(**SVM, kernel="poly", degree=2),
    }
    targets = {
        "linear": "ember_sklearn.linear:LinearFedAvgController",
        "kmeans": "ember_sklearn.kmeans:KMeansController",
        "svm": "ember_sklearn.svm:SVMController",
    }
    for key, recipe in recipes.items():
        job = json.loads((recipe.export(tmp_path / key) / "job.json").read_text())
        assert [w["target"] for w in job["workflows"]] == [targets[key]]
        assert job["meta"]["framework"] == "sklearn"
        assert job["workflows"][0]["args"]["model_spec"] == recipe.model_spec
    linear_args = json.loads((tmp_path / "linear" / "job.json").read_text())["workflows"][0]
    assert linear_args["args"]["persistor"]["target"] == "ember_sklearn.linear:LinearPersistor"
    assert recipes["linear"].model_spec["params"] == {"loss": "log_loss", "warm_start": True}
    assert recipes["svm"].model_spec["params"]["degree"] == 2
