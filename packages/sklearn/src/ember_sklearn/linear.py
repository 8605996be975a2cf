"""Linear models: ``coef`` and ``intercept`` averaged by sample count with core's FedAvg.

The global model starts at zeros (scikit-learn's own starting point for SGD and lbfgs) or
at given params; each round the sites warm-start from it and send their fitted params with
``NUM_STEPS_CURRENT_ROUND`` = their number of samples.

Without ``n_features`` in the spec (and no initial params) there is no model to start from:
round 0's task carries no params, every site fits from scratch on its data, and the average
of those fits is the first global model; later rounds warm-start from it as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ember.common import FLModel
from ember.controllers import FedAvgController, JobError, load_numpy_file
from ember_sklearn.model_io import load_model, save_model
from ember_sklearn.spec import SPEC_KEY, build_estimator

COEF = "coef"
INTERCEPT = "intercept"
CLASSIFIERS = ("SGDClassifier", "LogisticRegression")
REGRESSORS = ("SGDRegressor",)


def param_shapes(spec: dict[str, Any], n_features: int | None = None) -> dict[str, tuple[int, ...]]:
    """Shapes of ``coef`` and ``intercept`` as scikit-learn lays them out (``n_features``
    when the spec leaves it out)."""
    if spec.get("n_features") is not None:
        count = int(spec["n_features"])
    elif n_features is not None:
        count = int(n_features)
    else:
        raise ValueError("the spec has no n_features; the shapes need the number of features")
    if spec["estimator"] in REGRESSORS:
        return {COEF: (count,), INTERCEPT: (1,)}
    n_classes = len(spec["classes"])
    rows = 1 if n_classes == 2 else n_classes
    return {COEF: (rows, count), INTERCEPT: (rows,)}


def initial_params(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """Zeros of the right shapes; none (``{}``) when the spec has no ``n_features``: the
    sites' first results then make the global model."""
    if spec.get("n_features") is None:
        return {}
    return {key: np.zeros(shape) for key, shape in param_shapes(spec).items()}


def params_n_features(params: dict[str, Any], spec: dict[str, Any]) -> int:
    """The number of features: the spec's, else the last axis of ``params['coef']``."""
    if spec.get("n_features") is not None:
        return int(spec["n_features"])
    shape = np.shape(params.get(COEF, ()))
    if not shape or shape[-1] < 1:
        raise ValueError(f"{COEF} must be an array with one column per feature, got shape {shape}")
    return int(shape[-1])


def check_params(params: dict[str, Any], spec: dict[str, Any], what: str) -> None:
    """Raise ValueError unless ``params`` holds exactly coef and intercept of the right shapes
    (without ``n_features`` in the spec, ``coef``'s last axis gives it)."""
    keys = sorted((COEF, INTERCEPT))
    if set(params) != set(keys):
        raise ValueError(f"{what} must hold exactly {keys}, got {sorted(params)}")
    n_features = params_n_features(params, spec)
    for key, shape in param_shapes(spec, n_features).items():
        if np.shape(params[key]) != shape:
            raise ValueError(
                f"{what}[{key!r}] must have shape {shape} for {spec['estimator']} with "
                f"n_features={n_features}, got {np.shape(params[key])}"
            )


def spec_with_n_features(spec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with ``n_features`` filled in from ``params`` when it has none (and params
    are there to tell)."""
    if spec.get("n_features") is not None or COEF not in params:
        return spec
    return {**spec, "n_features": params_n_features(params, spec)}


def get_linear_params(estimator: Any) -> dict[str, np.ndarray]:
    """``coef`` and ``intercept`` of a fitted linear estimator (copies, float64)."""
    return {
        COEF: np.array(estimator.coef_, dtype=np.float64),
        INTERCEPT: np.atleast_1d(np.array(estimator.intercept_, dtype=np.float64)),
    }


def set_linear_params(estimator: Any, params: dict[str, Any], spec: dict[str, Any]) -> Any:
    """Load ``params`` into ``estimator`` so that it predicts with them and a warm-started
    ``fit`` continues from them; returns the estimator.

    Empty ``params`` (``None`` or ``{}``: round 0 of a recipe without ``n_features``, whose
    task carries no global model) leave the estimator as it is, so the site's ``fit``
    starts from scratch."""
    if not params:
        return estimator
    check_params(params, spec, "params")
    estimator.coef_ = np.array(params[COEF], dtype=np.float64)
    estimator.intercept_ = np.array(params[INTERCEPT], dtype=np.float64)
    if spec["estimator"] in CLASSIFIERS:
        estimator.classes_ = np.asarray(spec["classes"])
    estimator.n_features_in_ = params_n_features(params, spec)
    return estimator


def load_linear_model(path: str | Path) -> Any:
    """A scikit-learn estimator from a saved ``global_model.npz`` (+ ``.json``)."""
    params, spec = load_model(path)
    return set_linear_params(build_estimator(spec), params, spec)


class LinearPersistor:
    """The initial linear model (zeros, inline params or a checkpoint); saves .npz + .json.

    Without ``n_features`` in the spec and without initial params the initial model is
    empty (``{}``): round 0's task carries no params and the sites' fresh fits, averaged,
    make the global model. An empty model is never written (``save`` skips it, ``load`` of
    a file never written gives ``{}``); the saved spec gets ``n_features`` from ``coef``.
    """

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
        if not params:  # no global model yet (round 0 without n_features)
            return
        save_model(params, spec_with_n_features(self.spec, params), path)

    def load(self, path: Path) -> dict[str, Any]:
        if self.spec.get("n_features") is None and not Path(path).exists():
            return {}
        return load_model(path)[0]


class LinearFedAvgController(FedAvgController):
    """Core's FedAvg; every task also carries the model spec, so that sites build the
    estimator the recipe describes.

    Without ``n_features`` in the spec the first round's results set it: each site's
    ``coef``/``intercept`` must have the shapes of the first result (a site that differs
    fails the job, naming both), and later tasks carry the spec with ``n_features`` filled in.
    """

    def __init__(self, model_spec: dict[str, Any], **fedavg_args: Any) -> None:
        super().__init__(**fedavg_args, task_meta={SPEC_KEY: model_spec})
        self.model_spec = model_spec
        self._first: tuple[str, int] | None = None  # (site, n_features) of the first result

    def round_task_meta(self, rnd: int) -> dict[str, Any]:
        meta = super().round_task_meta(rnd)
        if self._first is not None and self.model_spec.get("n_features") is None:
            meta[SPEC_KEY] = {**self.model_spec, "n_features": self._first[1]}
        return meta

    def result_received(self, site: str, model: FLModel, weight: float) -> None:
        super().result_received(site, model, weight)
        if self.model_spec.get("n_features") is not None or not model.params:
            return
        params = {k: v for k, v in model.params.items() if k in (COEF, INTERCEPT)}
        try:
            if self._first is None:
                check_params(params, self.model_spec, f"{site}'s result")
                self._first = (site, params_n_features(params, self.model_spec))
            else:
                first, n_features = self._first
                spec = {**self.model_spec, "n_features": n_features}
                check_params(params, spec, f"{site}'s result (shapes as {first}'s)")
        except ValueError as exc:
            raise JobError(str(exc)) from None
