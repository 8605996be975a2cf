"""``MedianController``: the server workflow of :class:`~ember_recipe_median.recipe.MedianRecipe`.

Each round it sends the global model to every site still alive, waits for all of their
results (a median needs every value at once, so the server holds one model per site), and
makes the new global model their coordinate-wise median or trimmed mean. It is written
against :mod:`ember.controllers` alone, as every plugin's controller should be.
"""

from __future__ import annotations

import numbers
import re
import time
from typing import Any

import numpy as np

from ember.controllers import (
    BestModelTracker,
    Collected,
    FLModel,
    JobError,
    ParamsType,
    ServerContext,
    StopCondition,
    TaskName,
    TaskResult,
    apply_update,
    build_persistor,
    release_all,
    release_memory,
    resolve_deferred,
)

AGGREGATIONS = ("median", "trimmed_mean")


def robust_aggregate(values: list[Any], aggregation: str, trim: int = 0) -> np.ndarray[Any, Any]:
    """The coordinate-wise median (or mean after dropping the ``trim`` largest and ``trim``
    smallest values) of same-shaped numeric arrays, in their dtype (integers are rounded)."""
    stacked = np.stack([np.asarray(v) for v in values])
    if aggregation == "median":
        out = np.median(stacked, axis=0)
    else:
        kept = np.sort(stacked, axis=0)[trim : len(values) - trim]
        out = kept.mean(axis=0)
    if np.issubdtype(stacked.dtype, np.integer):
        out = np.rint(out)
    return np.asarray(out).astype(stacked.dtype, copy=False)


def median_metrics(site_metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each numeric metric's median over the sites that reported it: like the model, the
    round's metrics (and so ``key_metric``, ``stop_cond``) are not moved by a wild site."""
    values: dict[str, list[float]] = {}
    for reported in site_metrics.values():
        for name, value in reported.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                values.setdefault(name, []).append(float(value))
    return {name: float(np.median(v)) for name, v in values.items()}


class MedianController:
    """Robust FedAvg: broadcast the global model, take the coordinate-wise median (or
    trimmed mean) of the results, repeat; with FedAvg's early stopping and best model.

    The arguments are what :class:`~ember_recipe_median.recipe.MedianRecipe` writes into the
    job: FedAvg's (less ``aggregation_weights``) plus ``aggregation`` and ``trim``.
    """

    def __init__(
        self,
        num_rounds: int,
        min_clients: int,
        persistor: dict[str, Any],
        aggregation: str = "median",
        trim: int = 0,
        params_transfer_type: str = "FULL",
        key_metric: str | None = None,
        key_metric_mode: str = "max",
        stop_cond: str | None = None,
        patience: int | None = None,
        exclude_vars: str | None = None,
        server_memory_gc_rounds: int = 0,
        task_meta: dict[str, Any] | None = None,
    ) -> None:
        if aggregation not in AGGREGATIONS:
            raise JobError(f"aggregation must be one of {list(AGGREGATIONS)}, got {aggregation!r}")
        if aggregation == "trimmed_mean" and min_clients <= 2 * trim:
            raise JobError(
                f"trimmed_mean with trim={trim} needs min_clients > {2 * trim}, got {min_clients}"
            )
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.persistor = build_persistor(persistor)
        self.aggregation = aggregation
        self.trim = trim
        self.transfer_type = ParamsType(params_transfer_type)
        self.best = BestModelTracker(key_metric, key_metric_mode, patience)
        self.stop_cond = StopCondition.parse(stop_cond) if stop_cond else None
        self.exclude = re.compile(exclude_vars) if exclude_vars else None
        self.gc_rounds = server_memory_gc_rounds
        self.task_meta = dict(task_meta or {})

    def run(self, ctx: ServerContext) -> None:
        """Run every round (or until a stop condition), then write the summary."""
        params = self.persistor.initial_params(ctx.job_dir)
        models = ctx.server_dir / "models"
        ext = self.persistor.extension
        global_path, best_path = models / f"global_model{ext}", models / f"best_model{ext}"
        ctx.state["persistor"] = self.persistor
        if self.best.key_metric:  # global_model holds the model the sites train on
            self.persistor.save(params, global_path)
        stopped: str | None = None
        completed = 0
        for rnd in range(self.num_rounds):
            started = time.monotonic()
            params, collected, metrics, site_metrics = self._round(ctx, rnd, params)
            completed = rnd + 1
            if self.best.update(rnd, metrics):  # measured on the model the sites received
                self.persistor.save(self.persistor.load(global_path), best_path)
            self.persistor.save(params, global_path)
            ctx.records.round(rnd, collected, metrics, site_metrics, time.monotonic() - started)
            ctx.progress.round_done(rnd, metrics)
            if self.gc_rounds and completed % self.gc_rounds == 0:
                release_memory()
            if self.stop_cond is not None and self.stop_cond.met(metrics):
                stopped = f"stop_cond '{self.stop_cond}' met in round {rnd}"
                break
            stopped = self.best.patience_exhausted()
            if stopped:
                break
        ctx.state["global_params"] = params  # what cross-site evaluation sends as the server's
        ctx.state["global_model_path"] = global_path
        ctx.records.summary(
            rounds_completed=completed,
            num_rounds=self.num_rounds,
            stopped_early=stopped,
            aggregation=self.aggregation,
            trim=self.trim,
            key_metric=self.best.key_metric,
            best=self.best.summary(),
        )
        if stopped:
            ctx.log.info("stopping early: %s", stopped)

    def _round(
        self, ctx: ServerContext, rnd: int, params: dict[str, Any]
    ) -> tuple[dict[str, Any], Collected, dict[str, float], dict[str, dict[str, Any]]]:
        """One round: the new global model, who answered, the round's and sites' metrics."""
        targets = ctx.board.alive_sites()
        ctx.progress.round_started(rnd, self.num_rounds, len(targets))
        received: dict[str, dict[str, Any]] = {}
        types: set[ParamsType] = set()
        site_metrics: dict[str, dict[str, Any]] = {}

        def on_result(site: str, result: TaskResult) -> None:
            model = result.data or FLModel()
            sent = model.params or {}
            # pull what is aggregated now, while the other sites still train
            received[site] = {k: resolve_deferred(v) for k, v in sent.items() if self._kept(k)}
            release_all(sent)  # excluded tensors are never pulled: free them at the site
            if received[site]:
                types.add(model.params_type or ParamsType.FULL)
            site_metrics[site] = dict(model.metrics or {})
            ctx.progress.result_received(site)

        task = FLModel(
            params_type=ParamsType.FULL,
            params=params,
            current_round=rnd,
            total_rounds=self.num_rounds,
            meta=dict(self.task_meta),
        )
        collected = ctx.board.broadcast(
            TaskName.TRAIN, task, targets, self.min_clients, ctx.task_timeout, on_result
        )
        params_type = self._params_type(types)
        keys = dict.fromkeys(key for sent in received.values() for key in sent)
        aggregated = {
            key: self._aggregate(key, [sent[key] for sent in received.values() if key in sent])
            for key in keys
        }
        received.clear()  # the sites' models: held only for this round
        new = apply_update(params, aggregated, params_type)  # a key no site sent keeps its value
        return new, collected, median_metrics(site_metrics), site_metrics

    def _kept(self, key: str) -> bool:
        """Whether ``key`` is aggregated (keys matching ``exclude_vars`` keep their value)."""
        return self.exclude is None or not self.exclude.search(key)

    def _params_type(self, types: set[ParamsType]) -> ParamsType:
        """What the sites sent: FULL models, or DIFFs when the recipe asked for them."""
        if not types:
            raise JobError(
                "no site sent params with its result; a training script must send "
                "FLModel(params=...)"
            )
        if len(types) > 1:
            raise JobError("some sites sent FULL params and others DIFF; all must send the same")
        (params_type,) = types
        if params_type == ParamsType.DIFF and self.transfer_type != ParamsType.DIFF:
            raise JobError(
                "sites sent DIFF params but the recipe has params_transfer_type='FULL'; "
                "set params_transfer_type='DIFF'"
            )
        return params_type

    def _aggregate(self, key: str, values: list[Any]) -> np.ndarray[Any, Any]:
        """The robust aggregate of one key over the sites that sent it."""
        if len(values) <= 2 * self.trim:
            raise JobError(
                f"params[{key!r}] came from {len(values)} sites; trimmed_mean with "
                f"trim={self.trim} needs more than {2 * self.trim}"
            )
        arrays = [np.asarray(v) for v in values]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise JobError(f"params[{key!r}] has different shapes across sites: {sorted(shapes)}")
        odd = next((a for a in arrays if not _numeric(a)), None)
        if odd is not None:
            raise JobError(
                f"params[{key!r}] has dtype {odd.dtype}, which has no median; only integer "
                "and floating arrays are aggregated (exclude others with exclude_vars)"
            )
        return robust_aggregate(arrays, self.aggregation, self.trim)


def _numeric(array: np.ndarray[Any, Any]) -> bool:
    return bool(np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating))
