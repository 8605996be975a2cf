"""Model specs: which scikit-learn estimator, with which hyper-parameters, as plain JSON data.

A spec travels in the ``meta`` of every task (under :data:`SPEC_KEY`) and is saved beside
each model as JSON, so sites and loaders build the same estimator without pickle. Only the
estimators named in :data:`ESTIMATORS` can be built: a spec never names code to import.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from ember.client import ClientAPIError
from ember.common import FLModel
from ember.recipes import RecipeArgumentError

SPEC_KEY = "ember_sklearn.spec"
"""``FLModel.meta`` key of the model spec (a dict: algorithm, estimator, params, ...)."""

PHASE_KEY = "ember_sklearn.phase"
"""``FLModel.meta`` key of the algorithm's phase in this task (k-means: init or update)."""

ESTIMATORS = {
    "SGDClassifier": "sklearn.linear_model",
    "SGDRegressor": "sklearn.linear_model",
    "LogisticRegression": "sklearn.linear_model",
    "KMeans": "sklearn.cluster",
    "SVC": "sklearn.svm",
}


def estimator_class(name: str) -> type:
    """The scikit-learn class of an allowed estimator name (imports scikit-learn)."""
    if name not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {name!r}")
    cls: type = getattr(importlib.import_module(ESTIMATORS[name]), name)
    return cls


def build_estimator(spec: dict[str, Any] | FLModel) -> Any:
    """A fresh, unfitted estimator built from a spec (or from the spec a task carries)."""
    if isinstance(spec, FLModel):
        spec = model_spec(spec)
    return estimator_class(spec["estimator"])(**spec.get("params", {}))


def model_spec(model: FLModel) -> dict[str, Any]:
    """The spec an ember-sklearn task carries in its meta."""
    spec = (model.meta or {}).get(SPEC_KEY)
    if not isinstance(spec, dict):
        raise ClientAPIError(
            f"this task carries no ember-sklearn model spec (meta[{SPEC_KEY!r}]); it was not "
            "sent by an ember-sklearn recipe's controller. Keep the spec of the first task "
            "(cross-site evaluation tasks do not carry one)."
        )
    return spec


def check_json_params(arg: str, params: Any) -> dict[str, Any]:
    """``params`` must be a dict of str keys to JSON values (it is written to job.json)."""
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise RecipeArgumentError(
            f"{arg} must be a dict of hyper-parameter names to values, got {params!r}"
        )
    for key, value in params.items():
        try:
            same = json.loads(json.dumps(value)) == value
        except (TypeError, ValueError):
            same = False
        if not same:
            raise RecipeArgumentError(
                f"{arg}[{key!r}] must be a JSON value (number, string, bool, None, list, dict "
                f"with str keys) so the job can be exported, got {value!r}"
            )
    return dict(params)


def check_estimator_params(arg: str, estimator: str, params: dict[str, Any]) -> None:
    """Refuse names and values the estimator would refuse at fit time, now."""
    cls = estimator_class(estimator)
    try:
        instance = cls(**params)
    except TypeError:
        valid = sorted(cls().get_params())
        unknown = sorted(set(params) - set(valid))
        raise RecipeArgumentError(
            f"{arg}: {estimator} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid names: {valid}"
        ) from None
    validate = getattr(instance, "_validate_params", None)  # scikit-learn >= 1.2
    if validate is not None:
        try:
            validate()
        except (ValueError, TypeError) as exc:
            raise RecipeArgumentError(f"{arg}: {exc}") from None
