"""``FedAvgLrRecipe``: federated logistic regression by second-order Newton-Raphson steps."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ember.recipes.base import Recipe
from ember.recipes.client_apps import client_app
from ember.recipes.validation import RecipeArgumentError, check_int, check_job_name

NEWTON_RAPHSON_CONTROLLER = "ember.controllers:NewtonRaphsonController"


class FedAvgLrRecipe(Recipe):
    """Binary logistic regression by Newton-Raphson (NVFlare's ``FedAvgLrRecipe``).

    The model is a vector of ``num_features + 1`` float64 weights, the intercept first,
    zeros at the start. Each of ``num_rounds`` rounds the server sends the weights to every
    alive site (at least ``min_clients``; every site a round is sent to must answer); each
    site's ``train_script`` answers with the gradient and Hessian of its log-loss at those
    weights, summed over its samples, and its sample count
    (:func:`ember.newton_raphson.site_result`). The server sums them and steps::

        w <- w - damping_factor * (H + epsilon * I)^-1 g

    so the iterates are those of centralised Newton-Raphson on all the sites' data
    (:func:`ember.newton_raphson.fit`), up to rounding. ``damping_factor`` in (0, 1] scales
    the Newton step (1: the full step); ``epsilon`` >= 0 is added to the Hessian's diagonal
    (0: none; NVFlare's controller adds 1.0 to its averaged Hessian).

    Results: ``server/models/global_model.npz`` (the weights, key ``numpy_key``),
    ``server/newton_raphson.npz`` (``weights``: every iterate; ``loss``: the summed log-loss
    at each iterate sent) and the summed loss per round in ``round_metrics.jsonl``.
    """

    framework = "numpy"

    def __init__(
        self,
        *,
        name: str = "lr_fedavg",
        num_features: int = 13,
        min_clients: int = 1,
        num_rounds: int = 2,
        damping_factor: float = 0.8,
        epsilon: float = 0.0,
        train_script: str,
        train_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
    ) -> None:
        name = check_job_name(name)
        num_features = check_int("num_features", num_features, 1)
        min_clients = check_int("min_clients", min_clients, 1)
        num_rounds = check_int("num_rounds", num_rounds, 1)
        damping = _real("damping_factor", damping_factor)
        if not 0.0 < damping <= 1.0:
            raise RecipeArgumentError(
                f"damping_factor must be in (0, 1] (1: the full Newton step), got "
                f"{damping_factor!r}"
            )
        eps = _real("epsilon", epsilon)
        if eps < 0.0:
            raise RecipeArgumentError(
                f"epsilon must be >= 0 (added to the Hessian's diagonal), got {epsilon!r}"
            )
        app, files = client_app(train_script, train_args, launch_external_process, command)
        self.num_features = num_features
        self.damping_factor = damping
        self.epsilon = eps
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[
                {
                    "target": NEWTON_RAPHSON_CONTROLLER,
                    "args": {
                        "num_features": num_features,
                        "num_rounds": num_rounds,
                        "min_clients": min_clients,
                        "damping_factor": damping,
                        "epsilon": eps,
                    },
                }
            ],
            client=app,
            files=files,
        )


def _real(name: str, value: Any) -> float:
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(float(value))
    ):
        raise RecipeArgumentError(f"{name} must be a finite number, got {value!r}")
    return float(value)
