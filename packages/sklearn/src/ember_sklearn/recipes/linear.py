"""``SklearnFedAvgRecipe``: federated averaging of scikit-learn linear models."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ember.controllers import save_npz
from ember.recipes import (
    APP_DIR,
    FedAvgRecipe,
    JobFile,
    ModelSetup,
    RecipeArgumentError,
    bundle_checkpoint,
    check_choice,
    check_int,
)

LINEAR_ESTIMATORS = ("SGDClassifier", "SGDRegressor", "LogisticRegression")
_CLASSIFIERS = ("SGDClassifier", "LogisticRegression")
_PERSISTOR = "ember_sklearn.linear:LinearPersistor"
_ZEROS = "zeros"  # the initial model when neither initial_params nor initial_ckpt is given


class SklearnFedAvgRecipe(FedAvgRecipe):
    """FedAvg of a linear model: each round every site warm-starts ``estimator`` from the
    global ``coef``/``intercept``, fits on its data and sends them back with
    ``NUM_STEPS_CURRENT_ROUND`` = its sample count; the server averages them weighted by it.

    ``model_params`` are the estimator's hyper-parameters (``warm_start`` is always on).
    NVFlare's names are accepted there: ``n_classes`` (N labels ``0..N-1``: the same as
    ``classes=list(range(N))``; given with ``classes`` it must count them) and
    ``fit_intercept`` as ``0``/``1``.
    The global model starts at zeros of the right shapes (``n_features``; ``classes`` for
    classifiers), at ``initial_params`` ({"coef": ..., "intercept": ...}) or at
    ``initial_ckpt`` (.npz). Without any of them (``n_features=None``, NVFlare's way) round
    0's task carries no params: each site fits from scratch and the sample-weighted average
    of those fits is the first global model. Every task carries the spec
    (``ember_sklearn.client.model_spec``).
    The other arguments are :class:`ember.recipes.FedAvgRecipe`'s; the model is set by
    ``initial_params`` / ``initial_ckpt`` (not ``model``) and sites receive numpy arrays.
    """

    framework = "sklearn"
    replaces = ("model", "framework")
    controller = "ember_sklearn.linear:LinearFedAvgController"

    def __init__(
        self,
        *,
        name: str = "sklearn-fedavg",
        num_rounds: int = 5,
        estimator: str = "SGDClassifier",
        model_params: dict[str, Any] | None = None,
        n_features: int | None = None,
        classes: list[int] | list[str] | None = None,
        initial_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from ember_sklearn.spec import check_estimator_params, check_json_params

        estimator = check_choice("estimator", estimator, LINEAR_ESTIMATORS)
        if n_features is not None:
            n_features = check_int("n_features", n_features, 1)
        params = check_json_params("model_params", model_params)
        n_classes = params.pop("n_classes", None)  # NVFlare's name: labels 0..n_classes-1
        if "fit_intercept" in params:
            params["fit_intercept"] = _check_fit_intercept(params["fit_intercept"])
        if params.get("warm_start", True) is not True:
            raise RecipeArgumentError(
                "model_params['warm_start'] must be True (or left out): each round continues "
                "from the global model"
            )
        params["warm_start"] = True
        if estimator == "LogisticRegression" and params.get("solver") == "liblinear":
            raise RecipeArgumentError(
                "model_params['solver']='liblinear' cannot warm-start; use one of "
                "['lbfgs', 'newton-cg', 'newton-cholesky', 'sag', 'saga']"
            )
        check_estimator_params("model_params", estimator, params)
        if estimator in _CLASSIFIERS:
            if n_classes is not None:
                n_classes = check_int("model_params['n_classes']", n_classes, 2)
                if classes is None:
                    classes = list(range(n_classes))
            classes = _check_classes(classes)
            if n_classes is not None and len(classes) != n_classes:
                raise RecipeArgumentError(
                    f"model_params['n_classes']={n_classes} but classes={classes!r} lists "
                    f"{len(classes)} labels; give one of them (n_classes=N means classes "
                    "0..N-1)"
                )
        elif classes is not None:
            raise RecipeArgumentError(f"classes is for classifiers; {estimator} takes none")
        elif n_classes is not None:
            raise RecipeArgumentError(
                f"model_params['n_classes'] is for classifiers; {estimator} takes none"
            )
        if initial_params is not None and kwargs.get("initial_ckpt") is not None:
            raise RecipeArgumentError("give initial_params or initial_ckpt, not both")
        self.model_spec: dict[str, Any] = {
            "algorithm": "linear",
            "estimator": estimator,
            "params": params,
            "n_features": n_features,
        }
        if classes is not None:
            self.model_spec["classes"] = classes
        super().__init__(
            name=name,
            num_rounds=num_rounds,
            model=initial_params if initial_params is not None else _ZEROS,
            **kwargs,
        )

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """FedAvg's arguments plus the model spec, which every task carries."""
        if (
            self.model_spec["n_features"] is None
            and args.get("persistor", {}).get("args", {}).keys() == {"model_spec"}
            and getattr(args.get("params_transfer_type"), "value", args.get("params_transfer_type"))
            == "DIFF"
        ):
            raise RecipeArgumentError(
                "params_transfer_type='DIFF' needs a global model to start from: give "
                "n_features (or initial_params / initial_ckpt), or use 'FULL'"
            )
        return {**args, "model_spec": self.model_spec}

    def model_setup(
        self, framework: str, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
    ) -> ModelSetup:
        from ember_sklearn.linear import check_params

        args: dict[str, Any] = {"model_spec": self.model_spec}
        if initial_ckpt is not None:
            args["initial_ckpt"] = bundle_checkpoint(initial_ckpt, (".npz",), files)
        elif not (isinstance(model, str) and model == _ZEROS):
            if not isinstance(model, dict):
                raise RecipeArgumentError(
                    "initial_params must be a dict {'coef': array, 'intercept': array}, got "
                    f"{type(model).__name__}"
                )
            try:
                params = {k: np.asarray(v, dtype=np.float64) for k, v in model.items()}
                check_params(params, self.model_spec, "initial_params")
            except (TypeError, ValueError) as exc:
                raise RecipeArgumentError(str(exc)) from None
            # written when the job is exported, as core's recipes do
            files[f"{APP_DIR}/initial_model.npz"] = functools.partial(save_npz, params)
            args["initial_file"] = f"{APP_DIR}/initial_model.npz"
        return ModelSetup({"target": _PERSISTOR, "args": args})


def _check_classes(classes: Any) -> list[Any]:
    if (
        not isinstance(classes, list | tuple)
        or len(classes) < 2
        or not (
            all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
            or all(isinstance(c, str) for c in classes)
        )
        or len(set(classes)) != len(classes)
    ):
        raise RecipeArgumentError(
            "classes must list the labels, at least two, all int or all str, no duplicates, "
            f"e.g. classes=[0, 1] (or model_params={{'n_classes': 2}}); got {classes!r}"
        )
    return sorted(classes)


def _check_fit_intercept(value: Any) -> bool:
    """``fit_intercept``: a bool, or NVFlare's ``0``/``1``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise RecipeArgumentError(
        f"model_params['fit_intercept'] must be True/False (or 0/1), got {value!r}"
    )
