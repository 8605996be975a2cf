"""Federated logistic regression by Newton-Raphson: the server sums the sites' gradients and
Hessians of the log-loss and takes one damped Newton step per round."""

from __future__ import annotations

import numbers
import time
from typing import Any

import numpy as np

from ember.common.messages import TaskName, TaskResult
from ember.common.model import NUMPY_KEY, FLModel, MetaKey, ParamsType
from ember.newton_raphson import GRADIENT, HESSIAN, LOSS, NewtonRaphsonError, newton_step
from ember.runtime.board import Collected
from ember.runtime.context import ServerContext
from ember.runtime.errors import JobError
from ember.runtime.persistors import save_npz
from ember.streaming.lazy import resolve_deferred

#: server/newton_raphson.npz: the weights sent each round and the last step's (rounds + 1, d)
HISTORY_FILE = "newton_raphson.npz"


class NewtonRaphsonController:
    """Each round every alive site (at least ``min_clients``) gets the weights (params
    ``{NUMPY_KEY: w}``, ``num_features + 1`` float64 values, the intercept first) and answers
    with the gradient and Hessian of its log-loss at ``w`` (params ``"gradient"``,
    ``"hessian"``, sums over its samples; :func:`ember.newton_raphson.site_result`). The
    server sums them in the job's site order and steps ``w <- w - damping_factor * (H +
    epsilon*I)^-1 g``.

    Writes ``server/models/global_model.npz`` after every round, ``server/newton_raphson.npz``
    (``weights``: every iterate, the initial zeros first; ``loss``: the summed log-loss at
    each iterate sent) and, per round, the summed loss and sample count
    (``round_metrics.jsonl``). A site that fails, times out or sends something else makes
    the round's sum another objective's, so every site a round was sent to must answer.
    """

    def __init__(
        self,
        num_features: int,
        num_rounds: int,
        min_clients: int,
        damping_factor: float = 0.8,
        epsilon: float = 0.0,
    ) -> None:
        self.num_features = num_features
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.damping_factor = damping_factor
        self.epsilon = epsilon

    def run(self, ctx: ServerContext) -> None:
        size = self.num_features + 1
        w = np.zeros(size, dtype=np.float64)
        history = [w]
        losses: list[float] = []
        global_path = ctx.server_dir / "models" / "global_model.npz"
        for rnd in range(self.num_rounds):
            started = time.monotonic()
            gradient, hessian, collected, totals, site_metrics = self._round(ctx, rnd, w)
            try:
                w = newton_step(w, gradient, hessian, self.damping_factor, self.epsilon)
            except NewtonRaphsonError as exc:
                raise JobError(f"round {rnd}: {exc}") from None
            history.append(w)
            losses.append(totals["loss"])
            save_npz({NUMPY_KEY: w}, global_path)
            ctx.records.round(rnd, collected, totals, site_metrics, time.monotonic() - started)
            ctx.progress.round_done(rnd, totals)
            ctx.log.info("round %d: loss %.6g at the weights sent", rnd, totals["loss"])
        save_npz(
            {"weights": np.stack(history), "loss": np.asarray(losses)},
            ctx.server_dir / HISTORY_FILE,
        )
        ctx.state["global_params"] = {NUMPY_KEY: w}
        ctx.state["global_model_path"] = global_path
        ctx.records.summary(
            rounds_completed=self.num_rounds,
            num_rounds=self.num_rounds,
            damping_factor=self.damping_factor,
            epsilon=self.epsilon,
        )

    def _round(
        self, ctx: ServerContext, rnd: int, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, Collected, dict[str, float], dict[str, dict[str, Any]]]:
        """Send ``w`` to every alive site; the sums of their gradients and Hessians (in the
        job's site order), who answered, the summed loss and sample count, each site's
        metrics."""
        size = self.num_features + 1
        targets = ctx.board.alive_sites()
        ctx.progress.round_started(rnd, self.num_rounds, len(targets))
        sums = {GRADIENT: np.zeros(size), HESSIAN: np.zeros((size, size))}
        totals = {"loss": 0.0, "samples": 0.0}
        site_metrics: dict[str, dict[str, Any]] = {}

        def on_result(site: str, result: TaskResult) -> None:
            g, h, n, metrics = self._site_values(site, result, size)
            sums[GRADIENT] = sums[GRADIENT] + g
            sums[HESSIAN] = sums[HESSIAN] + h
            totals["samples"] += n
            totals["loss"] += float(metrics.get(LOSS, 0.0))
            site_metrics[site] = metrics
            ctx.progress.result_received(site)

        task = FLModel(
            params_type=ParamsType.FULL,
            params={NUMPY_KEY: w.copy()},
            current_round=rnd,
            total_rounds=self.num_rounds,
        )
        collected = ctx.board.broadcast(
            TaskName.TRAIN,
            task,
            targets,
            max(self.min_clients, len(targets)),  # every site: a missing one changes the sum
            ctx.task_timeout,
            on_result,
        )
        return sums[GRADIENT], sums[HESSIAN], collected, totals, site_metrics

    def _site_values(
        self, site: str, result: TaskResult, size: int
    ) -> tuple[np.ndarray, np.ndarray, float, dict[str, Any]]:
        model = result.data or FLModel()
        params = model.params or {}
        values = {}
        for key, shape in ((GRADIENT, (size,)), (HESSIAN, (size, size))):
            if key not in params:
                raise JobError(
                    f"{site} sent no {key!r} (got params {sorted(params)}); a FedAvgLrRecipe "
                    "script sends ember.newton_raphson.site_result(X, y, model)"
                )
            value = np.asarray(resolve_deferred(params[key]), dtype=np.float64)
            if value.shape != shape:
                if key == GRADIENT and value.size == size:
                    value = value.reshape(shape)  # a column vector is accepted
                else:
                    raise JobError(
                        f"{site} sent {key!r} of shape {value.shape}, expected {shape} "
                        f"(num_features={self.num_features} plus the intercept)"
                    )
            if not np.all(np.isfinite(value)):
                raise JobError(f"{site} sent a {key!r} with NaN or inf values")
            values[key] = value
        n = model.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 0)
        if not isinstance(n, numbers.Real) or isinstance(n, bool) or n < 0:
            raise JobError(
                f"{site} sent meta[{MetaKey.NUM_STEPS_CURRENT_ROUND!r}]={n!r}; it must be a "
                "number >= 0 (its sample count)"
            )
        return values[GRADIENT], values[HESSIAN], float(n), dict(model.metrics or {})
