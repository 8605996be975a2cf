"""Logistic regression by Newton-Raphson, the site's side (``FedAvgLrRecipe``).

A site's script receives the global weights ``w`` (``model.params[NUMPY_KEY]``, a vector of
``num_features + 1`` floats, the intercept first), computes the gradient and Hessian of its
log-loss at ``w`` and sends them with its sample count::

    import ember.client as flare
    from ember.newton_raphson import site_result

    flare.init()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        flare.send(site_result(X, y, model))

The server sums the sites' gradients and Hessians (sums over samples, not means, so the sum
is the whole federation's) and steps ``w <- w - damping_factor * (H + epsilon*I)^-1 g``:
:func:`newton_step`. :func:`fit` is the same iteration on one site's data, the centralised
reference the federated iterates equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.common.model import NUMPY_KEY, FLModel, MetaKey, ParamsType
from ember.errors import EmberError

#: result params: the log-loss's gradient (d,) and Hessian (d, d), summed over samples
GRADIENT = "gradient"
HESSIAN = "hessian"
#: result metrics: the log-loss summed over the site's samples, at the weights received
LOSS = "loss"


class NewtonRaphsonError(EmberError, ValueError):
    """Data or weights that logistic regression cannot use (shapes, labels, values)."""


def design_matrix(x: Any) -> np.ndarray:
    """``x`` (n, num_features) with a column of ones prepended: the intercept's feature."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise NewtonRaphsonError(
            f"X must be a 2-D array (samples, features), got shape {arr.shape}"
        )
    return np.concatenate([np.ones((arr.shape[0], 1)), arr], axis=1)


def _checked(x: Any, y: Any, w: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xa = design_matrix(x)
    labels = np.asarray(y, dtype=np.float64).reshape(-1)
    weights = np.asarray(w, dtype=np.float64).reshape(-1)
    if labels.shape[0] != xa.shape[0]:
        raise NewtonRaphsonError(f"X has {xa.shape[0]} samples but y has {labels.shape[0]} labels")
    if not np.all((labels == 0) | (labels == 1)):
        raise NewtonRaphsonError("y must hold binary labels, 0 or 1")
    if weights.shape[0] != xa.shape[1]:
        raise NewtonRaphsonError(
            f"the weights have {weights.shape[0]} values but X has {xa.shape[1] - 1} features "
            f"(the weights are the intercept then one per feature: {xa.shape[1]}); set the "
            "recipe's num_features to X's number of columns"
        )
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(weights))):
        raise NewtonRaphsonError("X and the weights must be finite (no NaN or inf)")
    return xa, labels, weights


def gradient_hessian(x: Any, y: Any, w: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """The gradient, the Hessian and the value of the log-loss
    ``sum_i log(1 + exp(z_i)) - y_i z_i`` (``z = [1, x] . w``) over the samples, at ``w``:
    ``X^T (p - y)``, ``X^T diag(p (1 - p)) X`` and the loss, with ``p = sigmoid(z)``."""
    xa, labels, weights = _checked(x, y, w)
    z = xa @ weights
    p = np.exp(-np.logaddexp(0.0, -z))  # sigmoid(z) without overflow
    gradient = xa.T @ (p - labels)
    hessian = (xa * (p * (1.0 - p))[:, None]).T @ xa
    loss = float(np.sum(np.logaddexp(0.0, z) - labels * z))
    return gradient, hessian, loss


def site_result(x: Any, y: Any, model: FLModel) -> FLModel:
    """What a site sends for the weights in ``model`` (a task of ``FedAvgLrRecipe``): the
    gradient and Hessian of its log-loss, its loss (metric ``"loss"``) and its sample count
    (``meta[NUM_STEPS_CURRENT_ROUND]``)."""
    params = model.params or {}
    if NUMPY_KEY not in params:
        raise NewtonRaphsonError(
            f"the task has no weights (params[{NUMPY_KEY!r}]); is this a FedAvgLrRecipe job?"
        )
    gradient, hessian, loss = gradient_hessian(x, y, params[NUMPY_KEY])
    return FLModel(
        params_type=ParamsType.FULL,
        params={GRADIENT: gradient, HESSIAN: hessian},
        metrics={LOSS: loss},
        meta={MetaKey.NUM_STEPS_CURRENT_ROUND: int(np.asarray(x).shape[0])},
        current_round=model.current_round,
        total_rounds=model.total_rounds,
    )


def newton_step(
    w: np.ndarray, gradient: np.ndarray, hessian: np.ndarray, damping_factor: float, epsilon: float
) -> np.ndarray:
    """``w - damping_factor * (hessian + epsilon * I)^-1 gradient``."""
    regularised = hessian + epsilon * np.eye(hessian.shape[0]) if epsilon else hessian
    try:
        step = np.linalg.solve(regularised, gradient)
    except np.linalg.LinAlgError:
        raise NewtonRaphsonError(
            "the summed Hessian is singular (features that are constant or collinear, or data "
            "that the weights separate perfectly); set epsilon > 0 to regularise it"
        ) from None
    return np.asarray(w - damping_factor * step, dtype=np.float64)


def fit(
    x: Any,
    y: Any,
    num_rounds: int,
    damping_factor: float = 0.8,
    epsilon: float = 0.0,
    initial: Any = None,
) -> np.ndarray:
    """Centralised Newton-Raphson on all the data: the weights before each step and after
    the last, shape ``(num_rounds + 1, num_features + 1)``; what a ``FedAvgLrRecipe`` job on
    the same data split over sites computes, round by round."""
    num_weights = np.asarray(x).shape[1] + 1
    w = np.zeros(num_weights) if initial is None else np.asarray(initial, dtype=np.float64)
    history = [w]
    for _ in range(num_rounds):
        gradient, hessian, _loss = gradient_hessian(x, y, w)
        w = newton_step(w, gradient, hessian, damping_factor, epsilon)
        history.append(w)
    return np.stack(history)


__all__ = [
    "GRADIENT",
    "HESSIAN",
    "LOSS",
    "NewtonRaphsonError",
    "design_matrix",
    "fit",
    "gradient_hessian",
    "newton_step",
    "site_result",
]
