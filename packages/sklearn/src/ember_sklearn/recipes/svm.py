"""``SVMFedAvgRecipe``: an SVM fitted by the server on the union of the sites' support
vectors, then evaluated at every site."""

from __future__ import annotations

from typing import Any

from ember.recipes import Recipe, RecipeArgumentError, check_choice, check_int
from ember_sklearn.recipes._common import assemble_job, check_number

KERNELS = ("linear", "poly", "rbf", "sigmoid")
EXTRA_PARAMS = ("cache_size", "class_weight", "max_iter", "shrinking", "tol")
_CONTROLLER = "ember_sklearn.svm:SVMController"


class SVMFedAvgRecipe(Recipe):
    """Federated SVM (scikit-learn's ``SVC``).

    Round 0: each site fits an SVC with these hyper-parameters on its data and sends its
    support vectors and their labels (``ember_sklearn.client.support_params``). The server
    fits the global SVC on their union; its support set is the union's support vectors.
    Round 1: each site evaluates the global model (``ember_sklearn.client.svm_predict``) and
    reports its metrics, weighted by ``NUM_STEPS_CURRENT_ROUND``. ``gamma='scale'`` is
    resolved on each fitting set: the sites' own, then the union (saved as a number).
    ``model_params`` may set ``tol``, ``shrinking``, ``cache_size``, ``max_iter`` and
    ``class_weight`` (None or 'balanced').
    """

    framework = "sklearn"

    def __init__(
        self,
        *,
        name: str = "sklearn-svm",
        min_clients: int,
        kernel: str = "rbf",
        C: float = 1.0,
        gamma: str | float = "scale",
        degree: int = 3,
        coef0: float = 0.0,
        model_params: dict[str, Any] | None = None,
        train_script: str,
        train_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
    ) -> None:
        from ember_sklearn.spec import check_estimator_params, check_json_params

        kernel = check_choice("kernel", kernel, KERNELS)
        c_value = check_number("C", C)
        if gamma not in ("scale", "auto"):
            if isinstance(gamma, str):
                raise RecipeArgumentError(
                    f"gamma must be 'scale', 'auto' or a number > 0, got {gamma!r}"
                )
            gamma = check_number("gamma", gamma)
        degree = check_int("degree", degree, 0)
        coef0 = check_number("coef0", coef0, positive=False)
        extra = check_json_params("model_params", model_params)
        unknown = sorted(set(extra) - set(EXTRA_PARAMS))
        if unknown:
            raise RecipeArgumentError(
                f"model_params may only set {list(EXTRA_PARAMS)} (kernel, C, gamma, degree and "
                f"coef0 are arguments of their own); got {unknown}"
            )
        if extra.get("class_weight") not in (None, "balanced"):
            raise RecipeArgumentError(
                "model_params['class_weight'] must be None or 'balanced', got "
                f"{extra['class_weight']!r}"
            )
        params = {
            "kernel": kernel,
            "C": c_value,
            "gamma": gamma,
            "degree": degree,
            "coef0": coef0,
            **extra,
        }
        check_estimator_params("model_params", "SVC", params)
        self.model_spec: dict[str, Any] = {"algorithm": "svm", "estimator": "SVC", "params": params}
        assemble_job(
            self,
            name=name,
            min_clients=min_clients,
            train_script=train_script,
            train_args=train_args,
            launch_external_process=launch_external_process,
            command=command,
            workflow={"target": _CONTROLLER, "args": {"model_spec": self.model_spec}},
        )
