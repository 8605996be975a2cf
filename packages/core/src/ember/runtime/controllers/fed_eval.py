"""Federated evaluation: every site validates one model; the server gathers the metrics."""

from __future__ import annotations

import json
import numbers
import time
from typing import Any

from ember.common.messages import TaskName, TaskResult
from ember.common.model import FLModel, MetaKey, ParamsType
from ember.runtime.context import ServerContext
from ember.runtime.controller import build_persistor
from ember.runtime.errors import JobError

#: task meta: the name of the model being evaluated
MODEL_NAME = "model_name"


class FedEvalController:
    """Load one model with the persistor, send it to every alive site as a ``validate``
    task and gather their metrics (at least ``min_clients`` must answer).

    Writes ``server/fed_eval/results.json``: ``{"model", "sites": {site: metrics},
    "weights": {site: weight}, "mean", "weighted_mean", "failed", "timed_out"}``. The means
    are over the numeric metrics; a site's weight is the ``NUM_STEPS_CURRENT_ROUND`` in its
    result's meta (the number of examples it evaluated), 1 if absent. The weighted means are
    also recorded as round 0 (``round_metrics.jsonl``, ``metrics_summary.json``).
    """

    def __init__(
        self,
        min_clients: int,
        persistor: dict[str, Any],
        model_name: str = "model",
        task_meta: dict[str, Any] | None = None,
    ) -> None:
        self.min_clients = min_clients
        self.persistor = build_persistor(persistor)
        self.model_name = model_name
        self.task_meta = dict(task_meta or {})

    def run(self, ctx: ServerContext) -> None:
        started = time.monotonic()
        params = self.persistor.initial_params(ctx.job_dir)
        sites = ctx.board.alive_sites()
        ctx.log.info("evaluating %s on %s", self.model_name, ", ".join(sites))
        ctx.progress.round_started(0, 1, len(sites))
        task = FLModel(
            params_type=ParamsType.FULL,
            params=params,
            meta={
                **self.task_meta,
                MODEL_NAME: self.model_name,
                MetaKey.MODEL_OWNER: f"SRV_{self.model_name}",
            },
        )
        del params  # the board holds the model until every site has taken its copy
        site_metrics: dict[str, dict[str, Any]] = {}
        weights: dict[str, float] = {}

        def record(site: str, result: TaskResult) -> None:
            model = result.data or FLModel()
            site_metrics[site] = dict(model.metrics or {})
            weight = model.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0)
            if not isinstance(weight, numbers.Real) or isinstance(weight, bool) or weight < 0:
                raise JobError(
                    f"{site} sent meta[{MetaKey.NUM_STEPS_CURRENT_ROUND!r}]={weight!r}; it must "
                    "be a number >= 0 (the number of examples evaluated)"
                )
            weights[site] = float(weight)
            ctx.progress.result_received(site)

        collected = ctx.board.broadcast(
            TaskName.VALIDATE, task, sites, self.min_clients, ctx.task_timeout, record
        )
        del task
        mean, weighted = _means(site_metrics, weights)
        results = {
            "model": self.model_name,
            "sites": site_metrics,
            "weights": weights,
            "mean": mean,
            "weighted_mean": weighted,
            "failed": collected.failed,
            "timed_out": collected.timed_out,
        }
        out = ctx.server_dir / "fed_eval" / "results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
        ctx.records.round(0, collected, weighted, site_metrics, time.monotonic() - started)
        ctx.progress.round_done(0, weighted)
        ctx.state["fed_eval_results"] = results
        ctx.records.summary(model=self.model_name, evaluated_sites=collected.responded, mean=mean)


def _means(
    site_metrics: dict[str, dict[str, Any]], weights: dict[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """The unweighted and weighted means of each numeric metric, over the sites that
    reported it."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    weighted_sums: dict[str, float] = {}
    weight_sums: dict[str, float] = {}
    for site, metrics in site_metrics.items():
        for name, value in metrics.items():
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                continue
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
            weighted_sums[name] = weighted_sums.get(name, 0.0) + float(value) * weights[site]
            weight_sums[name] = weight_sums.get(name, 0.0) + weights[site]
    mean = {name: sums[name] / counts[name] for name in sums}
    weighted = {name: weighted_sums[name] / weight_sums[name] for name in sums if weight_sums[name]}
    return mean, weighted
