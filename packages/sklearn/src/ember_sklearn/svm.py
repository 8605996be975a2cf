"""Federated SVM: the sites send their support vectors, the server fits on their union.

Round 0 (``train``): each site fits an SVC on its data and sends ``support_x`` and
``support_y``. The server fits the global SVC, with the same hyper-parameters, on the union
of those sets (in site order). Round 1 (``validate``): each site evaluates the global model
on its data. The global model is numeric (support vectors, dual coefficients, intercepts)
and predicts exactly as the fitted SVC did (:func:`svm_predict`), with no pickle.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ember.common import FLModel, MetaKey, ParamsType, TaskName, TaskResult
from ember.controllers import JobError, ServerContext, WeightedAverage
from ember_sklearn.model_io import save_model
from ember_sklearn.spec import SPEC_KEY, build_estimator

SUPPORT_X = "support_x"
SUPPORT_Y = "support_y"
KERNELS = ("linear", "poly", "rbf", "sigmoid")


# -- site side ------------------------------------------------------------------------------
def support_params(svc: Any, y: np.ndarray) -> dict[str, np.ndarray]:
    """A fitted SVC's support vectors and their labels (``y`` is what it was fitted on)."""
    return {
        SUPPORT_X: np.array(svc.support_vectors_, dtype=np.float64),
        SUPPORT_Y: np.asarray(y)[svc.support_],
    }


def svm_decision_function(
    params: dict[str, Any], spec: dict[str, Any], x: np.ndarray
) -> np.ndarray:
    """libsvm's decision values: (n,) for two classes (positive: ``classes[1]``), otherwise
    one column per class pair (i, j), i < j, in order (positive: class i)."""
    from sklearn.metrics import pairwise

    hp = spec["params"]
    sv = np.asarray(params["support_vectors"], dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    kernel = hp.get("kernel", "rbf")
    gamma = float(hp["gamma"])
    if kernel == "rbf":
        k = pairwise.rbf_kernel(x, sv, gamma=gamma)
    elif kernel == "poly":
        k = pairwise.polynomial_kernel(
            x, sv, degree=int(hp.get("degree", 3)), gamma=gamma, coef0=float(hp.get("coef0", 0))
        )
    elif kernel == "sigmoid":
        k = pairwise.sigmoid_kernel(x, sv, gamma=gamma, coef0=float(hp.get("coef0", 0)))
    elif kernel == "linear":
        k = pairwise.linear_kernel(x, sv)
    else:
        raise ValueError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
    dual = np.asarray(params["dual_coef"], dtype=np.float64)
    intercept = np.asarray(params["intercept"], dtype=np.float64)
    n_classes = len(params["classes"])
    if n_classes == 2:
        binary: np.ndarray = k @ dual[0] + intercept[0]
        return binary
    starts = np.concatenate([[0], np.cumsum(params["n_support"])]).astype(int)
    columns = []
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            columns.append(k[:, si] @ dual[j - 1, si] + k[:, sj] @ dual[i, sj])
    return np.stack(columns, axis=1) + intercept


def svm_predict(params: dict[str, Any], spec: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The global SVM's predictions (one-vs-one voting, as scikit-learn's SVC)."""
    classes = np.asarray(params["classes"])
    dec = svm_decision_function(params, spec, x)
    if len(classes) == 2:
        labels: np.ndarray = classes[(dec > 0).astype(int)]
        return labels
    votes = np.zeros((len(dec), len(classes)), dtype=np.int64)
    pair = 0
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            wins = dec[:, pair] > 0
            votes[wins, i] += 1
            votes[~wins, j] += 1
            pair += 1
    voted: np.ndarray = classes[np.argmax(votes, axis=1)]
    return voted


# -- server side ----------------------------------------------------------------------------
def resolve_gamma(gamma: Any, x: np.ndarray) -> float:
    """The number scikit-learn uses for ``gamma='scale'`` / ``'auto'`` on the data ``x``."""
    if gamma == "scale":
        var = float(np.asarray(x, dtype=np.float64).var())
        return 1.0 / (int(x.shape[1]) * var) if var != 0 else 1.0
    if gamma == "auto":
        return 1.0 / int(x.shape[1])
    return float(gamma)


def fit_global_svm(
    union_x: np.ndarray, union_y: np.ndarray, spec: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    """Fit the global SVC on the union: its params, its spec (gamma made a number) and the
    fitted SVC."""
    hp = {**spec["params"], "gamma": resolve_gamma(spec["params"].get("gamma", "scale"), union_x)}
    global_spec = {**spec, "params": hp}
    svc = build_estimator(global_spec).fit(union_x, union_y)
    params = {
        "support_vectors": np.array(svc.support_vectors_, dtype=np.float64),
        "support_labels": np.asarray(union_y)[svc.support_],
        "n_support": np.asarray(svc.n_support_, dtype=np.int64),
        "dual_coef": np.array(svc.dual_coef_, dtype=np.float64),
        "intercept": np.array(svc.intercept_, dtype=np.float64),
        "classes": np.asarray(svc.classes_),
    }
    return params, global_spec, svc


class SVMController:
    """Collect support vectors, fit the global SVC on their union, then an evaluation round.
    Saves ``models/global_model.npz`` + ``.json``."""

    def __init__(self, min_clients: int, model_spec: dict[str, Any]) -> None:
        self.min_clients = min_clients
        self.spec = model_spec

    def run(self, ctx: ServerContext) -> None:
        started = time.monotonic()
        ctx.progress.round_started(0, 2, len(ctx.board.alive_sites()))
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        site_metrics: dict[str, dict[str, Any]] = {}

        def keep(site: str, result: TaskResult) -> None:
            params = (result.data.params if result.data else None) or {}
            if SUPPORT_X not in params or SUPPORT_Y not in params:
                raise JobError(f"{site}: an SVM result must hold {SUPPORT_X!r} and {SUPPORT_Y!r}")
            x = np.asarray(params[SUPPORT_X], dtype=np.float64)
            y = np.asarray(params[SUPPORT_Y])
            if x.ndim != 2 or y.shape != (len(x),) or (xs and x.shape[1] != xs[0].shape[1]):
                raise JobError(
                    f"{site}: support vectors of shape {x.shape} with labels of shape "
                    f"{y.shape} do not fit the others"
                )
            xs.append(x)
            ys.append(y)
            reported = (result.data.metrics if result.data else None) or {}
            site_metrics[site] = {**reported, "n_support": len(x)}
            ctx.progress.result_received(site)

        collected = ctx.board.broadcast(
            TaskName.TRAIN,
            FLModel(current_round=0, total_rounds=2, meta={SPEC_KEY: self.spec}),
            ctx.board.alive_sites(),
            self.min_clients,
            ctx.task_timeout,
            keep,
        )
        union_x, union_y = np.concatenate(xs), np.concatenate(ys)
        if len(np.unique(union_y)) < 2:
            raise JobError("the sites' support vectors hold a single class; an SVM needs two")
        params, global_spec, _ = fit_global_svm(union_x, union_y, self.spec)
        path = ctx.server_dir / "models" / "global_model.npz"
        save_model(params, global_spec, path)
        metrics = {
            "union_size": float(len(union_x)),
            "global_support": float(len(params["support_vectors"])),
        }
        ctx.records.round(0, collected, metrics, site_metrics, time.monotonic() - started)
        ctx.progress.round_done(0, metrics)

        started = time.monotonic()
        targets = ctx.board.alive_sites()
        ctx.progress.round_started(1, 2, len(targets))
        average = WeightedAverage()
        eval_metrics: dict[str, dict[str, Any]] = {}

        def record(site: str, result: TaskResult) -> None:
            model = result.data or FLModel()
            weight = float(model.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0))
            average.add(site, None, None, weight, model.metrics)
            eval_metrics[site] = dict(model.metrics or {})
            ctx.progress.result_received(site)

        task = FLModel(
            params_type=ParamsType.FULL,
            params=params,
            current_round=1,
            total_rounds=2,
            meta={SPEC_KEY: global_spec},
        )
        collected = ctx.board.broadcast(
            TaskName.VALIDATE, task, targets, self.min_clients, ctx.task_timeout, record
        )
        metrics = average.metrics()
        ctx.records.round(1, collected, metrics, eval_metrics, time.monotonic() - started)
        ctx.progress.round_done(1, metrics)
        ctx.state["global_params"] = params
        ctx.state["global_model_path"] = path
        ctx.records.summary(
            rounds_completed=2,
            num_rounds=2,
            union_size=len(union_x),
            global_support_size=len(params["support_vectors"]),
        )
