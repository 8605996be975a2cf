"""Linear models: ``coef`` and ``intercept`` averaged by sample count with core's FedAvg.

The global model starts at zeros (scikit-learn's own starting point for SGD and lbfgs) or
at given params; each round the sites warm-start from it and send their fitted params with
``NUM_STEPS_CURRENT_ROUND`` = their number of samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ember.controllers import FedAvgController, JobError, load_numpy_file
from ember_sklearn.model_io import load_model, save_model
from ember_sklearn.spec import SPEC_KEY, build_estimator

COEF = "coef"
INTERCEPT = "intercept"
CLASSIFIERS = ("SGDClassifier", "LogisticRegression")
REGRESSORS = ("SGDRegressor",)


def param_shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``coef`` and ``intercept`` as scikit-learn lays them out."""
    n_features = int(spec["n_features"])
    if spec["estimator"] in REGRESSORS:
        return {COEF: (n_features,), INTERCEPT: (1,)}
    n_classes = len(spec["classes"])
    rows = 1 if n_classes == 2 else n_classes
    return {COEF: (rows, n_features), INTERCEPT: (rows,)}


def initial_params(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """Zeros of the right shapes."""
    return {key: np.zeros(shape) for key, shape in param_shapes(spec).items()}


def check_params(params: dict[str, Any], spec: dict[str, Any], what: str) -> None:
    """Raise ValueError unless ``params`` holds exactly coef and intercept of the right shapes."""
    shapes = param_shapes(spec)
    if set(params) != set(shapes):
        raise ValueError(f"{what} must hold exactly {sorted(shapes)}, got {sorted(params)}")
    for key, shape in shapes.items():
        if np.shape(params[key]) != shape:
            raise ValueError(
                f"{what}[{key!r}] must have shape {shape} for {spec['estimator']} with "
                f"n_features={spec['n_features']}, got {np.shape(params[key])}"
            )


def get_linear_params(estimator: Any) -> dict[str, np.ndarray]:
    """``coef`` and ``intercept`` of a fitted linear estimator (copies, float64)."""
    return {
        COEF: np.array(estimator.coef_, dtype=np.float64),
        INTERCEPT: np.atleast_1d(np.array(estimator.intercept_, dtype=np.float64)),
    }


def set_linear_params(estimator: Any, params: dict[str, Any], spec: dict[str, Any]) -> Any:
    """Load ``params`` into ``estimator`` so that it predicts with them and a warm-started
    ``fit`` continues from them; returns the estimator."""
    check_params(params, spec, "params")
    estimator.coef_ = np.array(params[COEF], dtype=np.float64)
    estimator.intercept_ = np.array(params[INTERCEPT], dtype=np.float64)
    if spec["estimator"] in CLASSIFIERS:
        estimator.classes_ = np.asarray(spec["classes"])
    estimator.n_features_in_ = int(spec["n_features"])
    return estimator


def load_linear_model(path: str | Path) -> Any:
    """A scikit-learn estimator from a saved ``global_model.npz`` (+ ``.json``)."""
    params, spec = load_model(path)
    return set_linear_params(build_estimator(spec), params, spec)


class LinearPersistor:
    """The initial linear model (zeros, inline params or a checkpoint); saves .npz + .json."""

    extension = ".npz"

    def __init__(
        self,
        model_spec: dict[str, Any],
        initial_file: str | None = None,
        initial_ckpt: str | None = None,
    ) -> None:
        self.spec = model_spec
        self.initial_file = initial_file
        self.initial_ckpt = initial_ckpt

    def initial_params(self, job_dir: Path) -> dict[str, Any]:
        source = self.initial_ckpt or self.initial_file
        if source is None:
            return initial_params(self.spec)
        path = Path(source) if Path(source).is_absolute() else job_dir / source
        params = load_numpy_file(path)
        try:
            check_params(params, self.spec, f"initial model {path.name}")
        except ValueError as exc:
            raise JobError(str(exc)) from None
        return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}

    def save(self, params: dict[str, Any], path: Path) -> None:
        save_model(params, self.spec, path)

    def load(self, path: Path) -> dict[str, Any]:
        return load_model(path)[0]


class LinearFedAvgController(FedAvgController):
    """Core's FedAvg; every task also carries the model spec, so that sites build the
    estimator the recipe describes."""

    def __init__(self, model_spec: dict[str, Any], **fedavg_args: Any) -> None:
        super().__init__(**fedavg_args, task_meta={SPEC_KEY: model_spec})
        self.model_spec = model_spec
